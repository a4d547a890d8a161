"""The query parameters statistics and the tests listing share: a window and a scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy.orm import Session

from anvil.domain.windows import Window, days, parse_window
from anvil.settings import Settings
from api.deps import SettingsDep
from api.history_schemas import ScopePublic
from db.scopes import Scope, resolve_scope

Ident = Annotated[str, Query(min_length=1, max_length=200)]
# The 404 of a case or suite named in the query (api/openapi.py declares those named in the path).
NAMED_IN_QUERY: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "a case or suite named in the query does not exist",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}
BRANCH_PATTERN = r"^[^\s\x00-\x1f\x7f~^:?*\[\\]{1,255}$"


def default_window(settings: Settings) -> Window:
    return days(settings.flaky_window_days)


def window_param(
    settings: SettingsDep,
    window: Annotated[
        str | None,
        Query(
            max_length=20, description="a span before now: 30d, 12h or 2w (default: ANVIL_FLAKY_WINDOW_DAYS)"
        ),
    ] = None,
    runs: Annotated[int | None, Query(description="instead of a span: the last N runs in scope")] = None,
) -> Window:
    return parse_window(window, runs, default=default_window(settings))


WindowParam = Annotated[Window, Depends(window_param)]


class ScopeParam:
    """``case`` and ``suite`` (names or ids, repeatable) add up; ``tag`` keeps the cases carrying it."""

    def __init__(
        self,
        case: Annotated[list[Ident] | None, Query(description="a test case name or id; repeatable")] = None,
        suite: Annotated[
            list[Ident] | None, Query(description="a test suite name or id (its member cases); repeatable")
        ] = None,
        tag: Annotated[
            str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="only cases with this tag")
        ] = None,
        branch: Annotated[
            str | None, Query(pattern=BRANCH_PATTERN, description="only results of runs on this branch")
        ] = None,
    ) -> None:
        self.cases, self.suites, self.tag, self.branch = case or [], suite or [], tag, branch

    def resolve(self, session: Session) -> tuple[Scope, ScopePublic]:
        scope = resolve_scope(session, cases=self.cases, suites=self.suites, tag=self.tag, branch=self.branch)
        shown = ScopePublic(
            case_ids=list(scope.case_ids) if scope.case_ids is not None else None,
            tag=self.tag,
            branch=self.branch,
        )
        return scope, shown


ScopeParams = Annotated[ScopeParam, Depends()]
