"""``/api/v1/rules``: the selection rules, with their parameters and what each means."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from anvil.domain.rules import CATALOGUE
from api.deps import Viewer

router = APIRouter(prefix="/api/v1/rules", tags=["selection"])


class RulePublic(BaseModel):
    name: str
    syntax: str = Field(description="how to write it in selection.rules, e.g. failed-in-last:<N>")
    parameter: str | None
    meaning: str


class RuleList(BaseModel):
    items: list[RulePublic]


@router.get("", response_model=RuleList)
def list_rules(_: Viewer) -> RuleList:
    """The rules of ``selection`` (submissions and POST /api/v1/executions/select): combined as a
    union, minus ``exclude``."""
    return RuleList(
        items=[
            RulePublic(name=r.name, syntax=r.syntax, parameter=r.parameter, meaning=r.meaning)
            for r in CATALOGUE
        ]
    )
