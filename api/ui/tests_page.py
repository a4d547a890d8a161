"""The tests page, ``/ui/tests``: the tests listing (a GET form of filters, keyset pages by name), the
flaky board (each flaky test with its evidence, the executions that show it, and its quarantine
button) and the slowest tests. The board and the slowest are the API's own handlers
(api/routes/stats.py: ``/stats/flaky-tests``, ``/stats/slowest``) over the default window
(ANVIL_FLAKY_WINDOW_DAYS), in the case filtered on if one is; the listing is GET /api/v1/tests's
query (db/history.py), its flaky filter answered by the board's tests rather than judged twice.
One test's history: api/ui/tests_history.py; the quarantine forms: api/ui/tests_quarantine.py."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anvil.domain.flaky import Thresholds
from anvil.errors import NotFound
from anvil.settings import Settings
from api.deps import SessionDep, SettingsDep
from api.history_params import ScopeParam, default_window
from api.history_schemas import FlakyList, SlowestPublic, TestPublic
from api.routes.stats import flaky_public, get_flaky_tests, get_slowest
from api.routes.tests import Kind, LastStatus, case_names
from api.ui.pages import PageRoute, render
from api.ui.session import PageUser, SignedIn
from api.ui.tests_quarantine import may_quarantine
from db import history
from db.flaky import board_order, failing_tests, flaky_list
from db.models import ResultRollup, TestResult
from db.quarantine import quarantined_ids
from db.scopes import Scope, result_filters
from db.types import utcnow

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
SLOWEST_SHOWN = 10
BOARD_SHOWN = 25  # the strongest evidence; the listing filtered on flaky has them all
# A full judgement this often (the window moves: results age out of it); new results are looked
# for at least every RECHECK_S, with OVERLAP before the last look's latest result.
BOARD_TTL_S, RECHECK_S, BOARDS_KEPT = 600.0, 30.0, 64
OVERLAP = timedelta(minutes=2)
_boards: dict[str | None, Board] = {}  # by the case filtered on
FIELDS = ("search", "case", "kind", "status", "flaky", "quarantined")
KINDS: tuple[str, ...] = get_args(Kind)
STATUSES: tuple[str, ...] = get_args(LastStatus)
YES_NO = {"yes": True, "no": False}


@dataclass
class Filters:
    """The form's values as given, the listing's arguments, and what could not be used."""

    given: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    nothing: bool = False  # a case name that matches nothing: no rows, and not a bad value


def read_filters(request: Request) -> Filters:
    given = {name: request.query_params.get(name, "").strip()[:200] for name in FIELDS}
    filters = Filters({k: v for k, v in given.items() if v})
    query, errors = filters.query, filters.errors
    if given["search"]:
        query["search"] = given["search"]
    if given["case"]:
        query["case"] = [given["case"]]
    for name, allowed, what in (("kind", KINDS, "a kind of test"), ("status", STATUSES, "a test status")):
        if given[name] in allowed:
            query[name] = given[name]
        elif given[name]:
            errors.append(f"{name}: {given[name]!r} is not {what} ({', '.join(allowed)})")
    for name in ("flaky", "quarantined"):
        if given[name] in YES_NO:
            query[name] = YES_NO[given[name]]
        elif given[name]:
            errors.append(f"{name}: choose yes, no, or leave it empty")
    return filters


def _listing(
    request: Request, session: Session, filters: Filters, scope: Scope, flaky_ids: set[uuid.UUID]
) -> tuple[list[TestPublic], str | None]:
    """A page of tests, as GET /api/v1/tests answers it (db/history.py's listing), its flaky filter
    answered by the board's tests: the same window, scope and thresholds, judged once."""
    now = utcnow()
    query, flaky = filters.query, filters.query.get("flaky")
    rows, following = history.list_tests(
        session,
        limit=PAGE_SIZE,
        cursor=request.query_params.get("cursor") or None,
        case_ids=scope.case_ids,
        kind=query.get("kind"),
        last_status=query.get("status"),
        search=query.get("search"),
        quarantined=query.get("quarantined"),
        only=flaky_ids if flaky else None,
        excluding=flaky_ids if flaky is False else None,
        now=now,
    )
    names = case_names(session, (t.test_case_id for t in rows))
    return [TestPublic.from_row(t, now=now, case_name=names.get(t.test_case_id)) for t in rows], following


@dataclass
class Board:
    """A flaky board and the slowest tests as last judged, per case filtered on."""

    judged_at: float  # monotonic: the last full judgement
    checked_at: float  # monotonic: the last look for new results
    latest: datetime | None  # the latest result recorded when last brought up to date
    flaky: FlakyList
    slowest: SlowestPublic


def _board(
    viewer: SignedIn,
    session: Session,
    settings: Settings,
    scope: ScopeParam,
    resolved: Scope,
    case: str | None,
) -> tuple[FlakyList, SlowestPublic]:
    """The flaky tests and the slowest, in the default window and the scope, by the API's handlers.

    Judging every test that failed in the window (1,000,000 results: 150,000 in 30 days) costs
    200–450 ms, and a page of tests is read far more often than a run ends: the board is judged in
    full once per process and BOARD_TTL_S, and in between brought up to date when results were
    recorded — only the tests with new results are judged again (see _update). Whether each is
    quarantined is read afresh every time, so a quarantine shows at once."""
    now = time.monotonic()
    latest = session.scalar(select(func.max(ResultRollup.recorded_at)))  # an index's last entry
    board = _boards.get(case)
    if board is None or now - board.judged_at > BOARD_TTL_S:
        window = default_window(settings)
        flaky = get_flaky_tests(viewer.user, session, settings, window, scope)
        slowest = get_slowest(viewer.user, session, window, scope, limit=SLOWEST_SHOWN)
        if len(_boards) >= BOARDS_KEPT:
            _boards.clear()
        _boards[case] = Board(now, now, latest, flaky, slowest)
        return flaky, slowest
    if board.latest != latest or now - board.checked_at > RECHECK_S:
        # A new result: judge its tests again. Every RECHECK_S also the OVERLAP before the last look:
        # a transaction commits a little after it stamped its results, maybe after that look.
        recheck = now - board.checked_at > RECHECK_S
        since = board.latest - OVERLAP if recheck and board.latest else board.latest
        _update(viewer, session, settings, scope, resolved, board, since)
        board.latest, board.checked_at = latest, now
    held = quarantined_ids(session, [f.test_id for f in board.flaky.items], now=utcnow())
    items = [f.model_copy(update={"quarantined": f.test_id in held}) for f in board.flaky.items]
    return board.flaky.model_copy(update={"items": items}), board.slowest


def _update(
    viewer: SignedIn,
    session: Session,
    settings: Settings,
    scope: ScopeParam,
    resolved: Scope,
    board: Board,
    since: datetime | None,
) -> None:
    """Judge again the tests with results recorded after ``since`` that failed in the window (the
    only ones that can be flaky) and put them in or out of the board; read the slowest again."""
    now = utcnow()
    window = default_window(settings)
    filters, _ = result_filters(session, resolved, window, now)
    newer = [TestResult.recorded_at > since] if since is not None else []
    touched = set(session.scalars(select(TestResult.test_id).where(*resolved.filters(), *newer).distinct()))
    if touched:
        suspects = failing_tests(session, [*filters, TestResult.test_id.in_(touched)])
        found = flaky_list(session, filters, suspects, Thresholds.of(settings))
        items = [f for f in board.flaky.items if f.test_id not in touched] + flaky_public(session, found, now)
        items.sort(key=lambda f: board_order(f.evidence[0].kind if f.evidence else None, f.failures, f.name))
        board.flaky = board.flaky.model_copy(update={"items": items})
    board.slowest = get_slowest(viewer.user, session, window, scope, limit=SLOWEST_SHOWN)


@router.get("/tests", response_class=HTMLResponse)
def tests_page(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    filters = read_filters(request)
    items: list[TestPublic] = []
    cursor = board = None
    scope = ScopeParam(case=[filters.given["case"]] if "case" in filters.given else None)
    try:
        resolved, _ = scope.resolve(session)
    except NotFound:
        filters.nothing = True
        filters.errors.append(f"case: there is no test case named {filters.given['case']!r}")
    if not filters.errors:
        board = _board(viewer, session, settings, scope, resolved, filters.given.get("case"))
        items, cursor = _listing(request, session, filters, resolved, {f.test_id for f in board[0].items})
    return render(
        request,
        "tests_list.html",
        viewer,
        422 if filters.errors and not filters.nothing else 200,
        filters=filters,
        items=items,
        flaky=board[0] if board else None,
        board=board[0].items[:BOARD_SHOWN] if board else [],
        board_all_url="/ui/tests?" + urlencode({**filters.given, "flaky": "yes"}),
        slowest=board[1] if board else None,
        next_url="/ui/tests?" + urlencode({**filters.given, "cursor": cursor}) if cursor else None,
        first_url="/ui/tests?" + urlencode(filters.given) if request.query_params.get("cursor") else None,
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        may_quarantine=may_quarantine(viewer),
        kinds=KINDS,
        statuses=STATUSES,
    )
