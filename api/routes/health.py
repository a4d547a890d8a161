from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.problems import problem
from db.session import new_session

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz() -> JSONResponse | dict[str, object]:
    """Ready when the database and the broker both answer; 503 naming what is down otherwise."""
    checks = {"database": _database(), "broker": _broker()}
    down = [name for name, error in checks.items() if error]
    if down:
        return problem(
            503,
            "Not ready",
            f"unreachable: {', '.join(down)}",
            checks={k: v or "ok" for k, v in checks.items()},
        )
    return {"status": "ok", "checks": {k: "ok" for k in checks}}


def _database() -> str | None:
    try:
        with new_session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def _broker() -> str | None:
    from workers.celery_app import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
