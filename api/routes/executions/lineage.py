"""The execution graph: what an execution came from, what it spawned, and its correlation chain.

Included first (api/routes/executions/__init__.py), so ``/executions/correlation/{id}`` is never
read as ``/executions/{execution_id}``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, Viewer
from api.execution_schemas import CorrelationPublic, DescendantPublic, ExecutionPublic, LineagePublic
from db import lineage
from db.executions import get_execution

router = APIRouter()

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
        executions=[ExecutionPublic.from_row(r) for r in rows],
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
        execution=ExecutionPublic.from_row(execution),
        depth=depth,
        ancestors=[ExecutionPublic.from_row(a) for a in lineage.ancestors(session, execution, depth=depth)],
        descendants=[
            DescendantPublic.from_row(d, level=level)
            for d, level in lineage.descendants(session, execution, depth=depth)
        ],
        siblings=[ExecutionPublic.from_row(s) for s in lineage.siblings(session, execution)],
    )
