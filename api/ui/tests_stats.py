"""Statistics, ``/ui/stats``: for a scope (a case, a suite, or everything) and a window (``30d``,
``12h``, ``2w`` or ``runs=N``; by default ANVIL_FLAKY_WINDOW_DAYS), the figures of
GET /api/v1/stats (the API's own handler) as numbers and as charts drawn on the server
(api/ui/charts.py): the pass rate per day, the results per status, the duration percentiles. A bad
window is the form again with the message, 422; an unknown case or suite, 404."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from anvil.domain.windows import Window, parse_window
from anvil.errors import InvalidInput, NotFound
from anvil.settings import Settings
from api.deps import SessionDep, SettingsDep
from api.history_params import ScopeParam, default_window
from api.history_schemas import DayPublic, StatsPublic
from api.routes.stats import get_stats
from api.ui.charts import BAD, OK, WARN, Bar, bar_list, column_chart
from api.ui.pages import PageRoute, _seconds, render
from api.ui.session import PageUser

router = APIRouter(route_class=PageRoute)

TOP = 10
DAYS_DRAWN = 180  # a longer window draws its last 180 days (the numbers cover all of it)
FIELDS = ("case", "suite", "window", "runs")


@dataclass
class Asked:
    """The form's values as given, and what is wrong with them (with the status to answer)."""

    given: dict[str, str]
    errors: list[str] = field(default_factory=list)
    status_code: int = 200


def read_window(given: dict[str, str], settings: Settings) -> Window:
    """``window`` is a span (30d) or ``runs=N``; ``runs`` (N) as in the API's query works too."""
    text, runs = given.get("window") or None, given.get("runs") or None
    if text is not None and text.lower().replace(" ", "").startswith("runs="):
        runs = text.split("=", 1)[1].strip()
        text = None
    count: int | None = None
    if runs is not None:
        if not runs.isdigit():
            raise InvalidInput(f"runs {runs!r} is not a number of runs, e.g. runs=20")
        count = int(runs[:6])
    return parse_window(text, count, default=default_window(settings))


def day_chart(trend: list[DayPublic]) -> Markup:
    shown = trend[-DAYS_DRAWN:]
    bars = []
    for day in shown:
        ran = day.passed + day.failed + day.error
        rate = day.passed / ran if ran else 0.0
        title = (
            f"{day.day}: pass rate {rate:.0%} ({day.passed} passed, {day.failed} failed, {day.error} error, "
            f"{day.skipped} skipped)"
            if ran
            else f"{day.day}: nothing ran ({day.skipped} skipped)"
        )
        colour = OK if rate >= 0.95 else WARN if rate >= 0.8 else BAD
        bars.append(Bar(str(day.day), rate, colour, title))
    return column_chart(
        bars, label=f"Pass rate per day (UTC), {len(bars)} days, oldest first", top_label="100 %"
    )


def status_chart(stats: StatsPublic) -> Markup:
    counts = [("passed", stats.passed, OK), ("failed", stats.failed, BAD), ("error", stats.error, BAD),
              ("skipped", stats.skipped, WARN)]  # fmt: skip
    most = max((n for _, n, _ in counts), default=0) or 1
    bars = [Bar(name, n / most, colour, f"{n} {name}") for name, n, colour in counts]
    return bar_list(bars, label=", ".join(f"{n} {name}" for name, n, _ in counts))


def duration_chart(stats: StatsPublic) -> Markup:
    found = [(name, v) for name, v in (("p50", stats.duration_p50_s), ("p95", stats.duration_p95_s)) if v]
    if not found:
        return Markup("")
    most = max(v for _, v in found)
    bars = [Bar(name, v / most, OK, f"{name}: {_seconds(v)}") for name, v in found]
    return bar_list(bars, label="Test duration: " + ", ".join(f"{n} {_seconds(v)}" for n, v in found))


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request, viewer: PageUser, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    asked = Asked({name: request.query_params.get(name, "").strip()[:200] for name in FIELDS})
    stats = None
    try:
        window = read_window(asked.given, settings)
        scope = ScopeParam(
            case=[asked.given["case"]] if asked.given["case"] else None,
            suite=[asked.given["suite"]] if asked.given["suite"] else None,
        )
        stats = get_stats(viewer.user, session, settings, window, scope, top=TOP)
    except (InvalidInput, NotFound) as exc:
        asked.errors.append(exc.detail)
        asked.status_code = exc.status_code
    return render(
        request,
        "tests_stats.html",
        viewer,
        asked.status_code,
        asked=asked,
        stats=stats,
        charts={
            "days": day_chart(stats.trend),
            "statuses": status_chart(stats),
            "durations": duration_chart(stats),
        }
        if stats
        else {},
        days_cut=stats is not None and len(stats.trend) > DAYS_DRAWN,
    )
