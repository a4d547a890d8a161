"""The web interface under ``/ui``: server-rendered pages (Jinja2) with htmx for the live parts.

``install(app)`` adds its routes, its static files and the ``/`` redirect. Pages: login and
logout (api/ui/login.py), the runs (api/ui/runs.py), one execution (api/ui/execution.py); how a
page knows its user and checks its forms: api/ui/session.py; rendering and error pages:
api/ui/pages.py.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.ui import execution, login, runs
from api.ui.pages import HERE


def install(app: FastAPI) -> None:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    # runs first: its literal /executions/rows must win over /executions/{execution_id}.
    for module in (login, runs, execution):
        router.include_router(module.router)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The web interface (which asks to sign in first when nobody is)."""
        return RedirectResponse("/ui/executions", status_code=307)
