"""``/api/v1/executions``: the resource's one router, and the order of its routes.

Each module holds one concern's routes on a plain ``APIRouter()``; this package gives them the
prefix and their OpenAPI tags. Starlette tries routes in the order they are included here, and the
OpenAPI document lists them in it: the literal paths (``/correlation/{id}``, ``/suite``,
``/batch``, ``/case``, ``/select``) come before the ``/{execution_id}`` ones.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.execution_schemas import ExecutionPublic
from api.routes.executions import control, events, junit, lineage, manual, read, selection, submit
from api.schemas import Page

router = APIRouter(prefix="/api/v1/executions")

# Tags: the sections of the OpenAPI document.
router.include_router(lineage.router, tags=["lineage"])
router.include_router(submit.router, tags=["executions"])
router.include_router(selection.router, tags=["selection"])
# The collection's path is the prefix itself, which an included router cannot declare (FastAPI
# refuses an empty prefix with an empty path): it is added here.
router.add_api_route(
    "", read.list_executions, methods=["GET"], response_model=Page[ExecutionPublic], tags=["executions"]
)
router.include_router(read.router, tags=["executions"])
router.include_router(control.router, tags=["executions"])
router.include_router(events.router, tags=["events"])
router.include_router(junit.router, tags=["executions"])
router.include_router(manual.router, tags=["manual tests"])
