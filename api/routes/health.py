from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.problems import problem
from db.session import new_session
from workers.publish import broker_problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz() -> JSONResponse | dict[str, object]:
    """Ready when the database and the broker both answer; 503 naming what is down otherwise."""
    checks = {"database": _database(), "broker": broker_problem()}
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
