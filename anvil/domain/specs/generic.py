"""Generic specs (kind ``generic``): commands run one after another in a workspace, each a step."""

from __future__ import annotations

from typing import Annotated

import regex
from pydantic import Field, StrictFloat, StrictInt, StringConstraints, field_validator

from anvil.domain.specs.base import Arg, Strict, WorkspaceName
from anvil.domain.specs.env import ENV_DESCRIPTION, Env, no_anvil_variables
from anvil.domain.specs.sandbox import SandboxOptions


class GenericStep(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    run: list[Arg] = Field(min_length=1, max_length=256, description="argv, run without a shell")
    expect_exit: StrictInt = Field(default=0, ge=0, le=255)
    expect_output: str | None = Field(
        default=None, max_length=2000, description="regex searched in the output"
    )
    timeout_s: StrictFloat | None = Field(default=None, gt=0, le=24 * 3600)
    env: Env = Field(default_factory=dict, description=ENV_DESCRIPTION)

    @field_validator("expect_output")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                regex.compile(v)  # the worker matches with the regex package (with a time budget)
            except regex.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return v

    _no_anvil = field_validator("env")(no_anvil_variables)


class GenericSpec(SandboxOptions, Strict):
    """Commands to run in a workspace; a pytest run is its own kind (anvil/domain/specs/pytest.py)."""

    workspace: WorkspaceName
    steps: list[GenericStep] = Field(min_length=1, max_length=500)
