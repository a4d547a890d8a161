"""Finding things in the API's collections: every page of a listing, an id for a name, a suite body.

Plain functions over an ``Api``, shared by the commands and by the examples of `anvil dev`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from anvil.cli.http import Api, ApiError


def pages(api: Api, path: str, filters: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    """The items of a cursor-paginated listing, at most ``limit`` of them."""
    params = {k: v for k, v in filters.items() if v is not None}
    cursor: str | None = None
    seen = 0
    while seen < limit:
        page = api.call("GET", path, params={**params, "limit": min(limit - seen, 200), "cursor": cursor})
        yield from page["items"]
        seen += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor or not page["items"]:
            return


def resolve(api: Api, path: str, what: str, ident: str) -> str:
    """An id given as a UUID, or looked up by exact name in the collection at ``path``."""
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        pass
    for item in pages(api, path, {}, 100_000):
        if item["name"] == ident:
            return str(item["id"])
    raise ApiError(f"no {what} with id or name {ident!r}")


def resolve_case(api: Api, ident: str) -> str:
    return resolve(api, "/api/v1/test-cases", "test case", ident)


def resolve_cases(api: Api, idents: list[str]) -> list[str]:
    """Case ids for names or ids, with one listing of the catalogue; every unknown name is reported."""
    ids: dict[str, str] = {}
    for ident in idents:
        try:
            ids[ident] = str(uuid.UUID(ident))
        except ValueError:
            pass
    wanted = {ident for ident in idents if ident not in ids}
    if wanted:
        for case in pages(api, "/api/v1/test-cases", {}, 100_000):
            if case["name"] in wanted:
                ids[case["name"]] = str(case["id"])
    missing = [ident for ident in idents if ident not in ids]
    if missing:
        raise ApiError(f"cases: no test case named {', '.join(map(repr, missing))}")
    return [ids[ident] for ident in idents]


def suite_body(api: Api, definition: Any) -> dict[str, Any]:
    """The API body of a suite file: ``cases`` (names or ids) become ``case_ids``."""
    if not isinstance(definition, dict):
        raise ApiError("a suite definition is a JSON object with at least a name")
    body = dict(definition)
    cases = body.pop("cases", None)
    if cases is None:
        return body
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise ApiError("cases: give a list of test case names or ids")
    ids = resolve_cases(api, cases)
    body["case_ids"] = list(dict.fromkeys([*(body.get("case_ids") or []), *ids]))
    return body
