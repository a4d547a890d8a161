"""Test-case specs, validated per kind. Unknown keys are refused so typos never pass silently."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from anvil.errors import InvalidInput
from db.enums import CaseKind
from workers.sandbox import WORKSPACE_NAME

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Arg = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
WorkspaceName = Annotated[str, StringConstraints(pattern=WORKSPACE_NAME.pattern)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenericStep(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    run: list[Arg] = Field(min_length=1, max_length=256, description="argv, run without a shell")
    expect_exit: int = Field(default=0, ge=0, le=255)
    expect_output: str | None = Field(
        default=None, max_length=2000, description="regex searched in the output"
    )
    timeout_s: float | None = Field(default=None, gt=0, le=24 * 3600)
    env: dict[
        Annotated[str, StringConstraints(pattern=ENV_NAME)],
        Annotated[str, StringConstraints(max_length=4096)],
    ] = Field(default_factory=dict)

    @field_validator("expect_output")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v

    @field_validator("env")
    @classmethod
    def _no_anvil(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = [k for k in v if k.startswith("ANVIL_")]
        if reserved:
            raise ValueError(f"ANVIL_* variables are reserved: {', '.join(reserved)}")
        return v


class GenericSpec(Strict):
    workspace: WorkspaceName
    steps: list[GenericStep] = Field(min_length=1, max_length=500)


class ManualStep(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    expected: Annotated[str, StringConstraints(max_length=5000)] | None = None


class ManualSpec(Strict):
    instructions: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    steps: list[ManualStep] = Field(min_length=1, max_length=500)


SPEC_MODELS: dict[str, type[Strict]] = {CaseKind.GENERIC: GenericSpec, CaseKind.MANUAL: ManualSpec}


def validate_spec(kind: str, spec: Any) -> dict[str, Any]:
    """The spec normalised for storage; InvalidInput naming the offending field otherwise."""
    model = SPEC_MODELS.get(kind)
    if model is None:
        raise InvalidInput(f"test kind {kind!r} is not supported by this server", field="body.kind")
    try:
        return model.model_validate(spec).model_dump(exclude_none=True)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(["body", "spec", *map(str, e["loc"])]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0]
        raise InvalidInput(
            f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        ) from exc
