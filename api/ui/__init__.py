"""The web interface under ``/ui``: server-rendered pages (Jinja2) with htmx for the live parts.

``install(app)`` adds its routes, its static files and the ``/`` redirect. Pages: login and
logout (login.py), the runs (runs.py), one execution (execution.py, its lineage graph
lineage_graph.py), suites and cases (catalog.py, their forms catalog_forms.py), tests, flaky tests
and statistics (tests_page.py, tests_history.py, tests_quarantine.py, tests_stats.py, their SVG
charts charts.py), manual testing (manual.py), schedules (schedules_page.py, schedules_form.py),
operations (operations.py). How a page knows its user and checks its forms: session.py;
rendering and error pages: pages.py.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.ui import (
    catalog,
    catalog_forms,
    execution,
    login,
    manual,
    operations,
    runs,
    schedules_page,
    tests_history,
    tests_page,
    tests_quarantine,
    tests_stats,
    webhooks_page,
)
from api.ui.pages import HERE


def install(app: FastAPI) -> None:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    # runs first: its literal /executions/rows must win over /executions/{execution_id}.
    for module in (
        login, runs, execution, manual, catalog, catalog_forms,
        tests_page, tests_history, tests_quarantine, tests_stats, schedules_page, operations, webhooks_page,
    ):  # fmt: skip
        router.include_router(module.router)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The web interface (which asks to sign in first when nobody is)."""
        return RedirectResponse("/ui/executions", status_code=307)
