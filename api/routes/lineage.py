"""The execution graph: what an execution came from, what it spawned, and its correlation chain.

Registered before the executions router, so ``/executions/correlation/{id}`` is never read as
``/executions/{execution_id}``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, Viewer
from api.routes.executions import to_public
from api.schemas import CorrelationPublic, DescendantPublic, LineagePublic
from db import lineage
from db.executions import get_execution

router = APIRouter(prefix="/api/v1/executions", tags=["lineage"])

DEFAULT_DEPTH = 20
MAX_DEPTH = 100


@router.get("/correlation/{correlation_id}", response_model=CorrelationPublic)
def get_correlation_chain(correlation_id: uuid.UUID, _: Viewer, session: SessionDep) -> CorrelationPublic:
    """Every execution sharing this correlation id (a run and all its retries, repairs, children)."""
    rows = lineage.correlation_chain(session, correlation_id)
    return CorrelationPublic(
        correlation_id=correlation_id,
        total_executions=len(rows),
        root_execution_id=lineage.chain_root(rows).id,
        executions=[to_public(r) for r in rows],
    )


@router.get("/{execution_id}/lineage", response_model=LineagePublic)
def get_lineage(
    execution_id: uuid.UUID,
    _: Viewer,
    session: SessionDep,
    depth: Annotated[
        int, Query(ge=1, description=f"levels up and down to follow; larger values count as {MAX_DEPTH}")
    ] = DEFAULT_DEPTH,
) -> LineagePublic:
    """Ancestors (root first), descendants (breadth-first, with their level) and siblings."""
    depth = min(depth, MAX_DEPTH)
    execution = get_execution(session, execution_id)
    return LineagePublic(
        execution=to_public(execution),
        depth=depth,
        ancestors=[to_public(a) for a in lineage.ancestors(session, execution, depth=depth)],
        descendants=[
            DescendantPublic(**to_public(d).model_dump(), level=level)
            for d, level in lineage.descendants(session, execution, depth=depth)
        ],
        siblings=[to_public(s) for s in lineage.siblings(session, execution)],
    )
