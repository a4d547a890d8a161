"""Hostile input stopped at the boundary, before any route or the database sees it.

Every request body sent as JSON (or without a content type, which FastAPI reads as JSON) is parsed
once here, strictly: ``NaN``/``Infinity`` (and numbers too large for a float) are refused, and so
are strings holding NUL (PostgreSQL text cannot store it) or lone UTF-16 surrogates (not text;
they cannot be encoded), in values and in keys, and nesting deeper than ``MAX_JSON_DEPTH``.
Query strings and form bodies are checked for NUL. Each violation is a 422 problem naming where
it is (``body.params.a.0``, ``query.run_id``). Bodies that are not JSON at all are left to
FastAPI, which reports them itself. The body size is capped before this by ``BodyLimit``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from api import problems

# Deeper than any body of this API needs (params are limited to 32 levels inside it).
MAX_JSON_DEPTH = 64
BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
# What could decode to NUL, a surrogate or an infinite float, in UTF-8 JSON text: a \u0000 or
# \uD800-\uDFFF escape, a surrogate's own bytes (json.loads decodes them), a 3-digit exponent.
SUSPECT = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])|\xed[\xa0-\xbf]|[eE][+-]?\d{3}")
WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}
FORM = "application/x-www-form-urlencoded"


class Refused(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _no_constant(name: str) -> Any:
    raise Refused("body", f"{name} is not a JSON number; numbers must be finite")


def _char_problem(char: str) -> str:
    if char == "\x00":
        return "contains a NUL character (\\u0000), which is not allowed in text"
    return f"contains a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode text"


def _find(value: Any, depth: int) -> tuple[list[str], str] | None:
    """The path (innermost first) and the reason of the first bad value in ``value``, or None."""
    if isinstance(value, str):
        bad = BAD_CHARS.search(value)
        return ([], _char_problem(bad.group())) if bad else None
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], "is too large a number; numbers must be finite")
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if depth >= MAX_JSON_DEPTH:
        return [], f"nests deeper than {MAX_JSON_DEPTH} levels"
    for key, item in items:
        if isinstance(key, str) and (bad := BAD_CHARS.search(key)):
            return [_printable(key)], "key " + _char_problem(bad.group())
        found = _find(item, depth + 1)
        if found is not None:
            found[0].append(str(key))
            return found
    return None


def _printable(text: str) -> str:
    """A key as it can be shown in a field path: NUL and lone surrogates escaped."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def check_json(raw: bytes) -> None:
    """Raises Refused for hostile JSON; returns for good JSON and for anything that is not JSON."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise Refused("body", f"nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        return  # not JSON (or not UTF-8): FastAPI's own 4xx says so
    if _plainly_fine(raw):
        return
    found = _find(value, 0)
    if found is not None:
        path, message = found
        raise Refused(".".join(["body", *reversed(path)]), message)


def _plainly_fine(raw: bytes) -> bool:
    """UTF-8 JSON with nothing suspect and too few brackets to nest too deep: no walk needed."""
    if raw[:1] in (b"\xef", b"\xfe", b"\xff") or b"\x00" in raw[:4]:  # a BOM, or UTF-16/32
        return False
    if raw.count(b"{") + raw.count(b"[") >= MAX_JSON_DEPTH:
        return False
    return SUSPECT.search(raw) is None


def check_pairs(raw: bytes, where: str) -> None:
    """Query strings and form bodies: no NUL in a name or a value."""
    if b"%00" not in raw and b"\x00" not in raw:
        return
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            raise Refused(f"{where}.{_printable(name)}", _char_problem("\x00"))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class InputGuard:
    """ASGI middleware: the checks above on every HTTP request; a 422 problem on the first violation."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            check_pairs(scope.get("query_string", b""), "query")
        except Refused as exc:
            return await self._refuse(exc, scope, receive, send)
        if scope["method"] not in WITH_BODY:
            return await self.app(scope, receive, send)
        content_type = ""
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
        form = content_type.split(";", 1)[0].strip().lower() == FORM
        if not form and not _is_json(content_type):
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if form:
                check_pairs(body, "body")
            elif body:
                check_json(body)
        except Refused as exc:
            return await self._refuse(exc, scope, receive, send)
        first: list[Any] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Any:
            # The buffered body once, then the real channel (which reports a disconnect).
            return first.pop() if first else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, exc: Refused, scope: Any, receive: Any, send: Any) -> None:
        error = {"field": exc.field, "message": exc.message, "type": "hostile_input"}
        response = problems.problem(
            422,
            "Invalid request",
            f"{exc.field}: {exc.message}",
            request=Request(scope),
            field=exc.field,
            errors=[error],
        )
        await response(scope, receive, send)
