"""One test, ``/ui/tests/{id}``: a strip of its last runs' outcomes (each cell a link to its
execution), a sparkline of their durations, whether it is flaky and why, its quarantine with the
button and the audit, and the results as a table, one keyset page at a time. The test and its
verdict come from the API's own handler (GET /api/v1/tests/{id}); the results from the same query
as GET /api/v1/tests/{id}/history (db/history.py), read once for the strip, the line and the table."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.deps import SessionDep, SettingsDep
from api.routes.tests import get_test
from api.ui.charts import sparkline
from api.ui.pages import PageRoute, _seconds, _when, render
from api.ui.session import PageUser
from api.ui.tests_quarantine import may_quarantine, test_ident
from db import history, quarantine
from db.models import TestResult

router = APIRouter(route_class=PageRoute)

RUNS_SHOWN = 50
EVENTS_SHOWN = 10


@dataclass(frozen=True)
class Cell:
    """One run in the strip: how the test ended there, and the sentence that says it."""

    execution_id: str
    status: str
    quarantined: bool
    label: str


def cell(result: TestResult) -> Cell:
    status = result.status + (" under quarantine" if result.quarantined else "")
    retry = ", passed on a retry" if result.flaky_retry else ""
    label = f"{status}{retry} · {_when(result.recorded_at)} · {_seconds(result.duration_s)}"
    return Cell(str(result.execution_id), result.status, result.quarantined, label)


def duration_line(results: list[TestResult]) -> tuple[Markup, str]:
    """The sparkline of the durations, oldest first (``results`` come newest first), and what it
    says in words."""
    values = [r.duration_s for r in reversed(results) if r.duration_s is not None]
    if not values:
        return Markup(""), ""
    label = (
        f"Duration of the last {len(values)} timed runs, oldest first: from {_seconds(min(values))} "
        f"to {_seconds(max(values))}, the latest {_seconds(values[-1])}"
    )
    return sparkline(values, label=label), label


@router.get("/tests/{test_id}", response_class=HTMLResponse)
def test_page(
    request: Request, test_id: str, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    ident = test_ident(test_id)
    test = get_test(ident, viewer.user, session, settings)
    cursor = request.query_params.get("cursor") or None
    results, next_cursor = history.test_history(session, ident, limit=RUNS_SHOWN, cursor=cursor)
    line, line_caption = duration_line(results)
    return render(
        request,
        "tests_history.html",
        viewer,
        test=test,
        results=results,
        cells=[cell(r) for r in reversed(results)],
        line=line,
        line_caption=line_caption,
        events=quarantine.events(session, ident, limit=EVENTS_SHOWN),
        may_quarantine=may_quarantine(viewer),
        next_url=f"/ui/tests/{ident}?cursor={next_cursor}" if next_cursor else None,
        first_url=f"/ui/tests/{ident}" if cursor else None,
        here=f"/ui/tests/{ident}",
    )
