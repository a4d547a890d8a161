"""Test-case specs, validated per kind. Unknown keys are refused so typos never pass silently."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

import regex
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from anvil.domain.enums import CaseKind
from anvil.domain.workspaces import WORKSPACE_NAME
from anvil.errors import InvalidInput
from api.bdd_spec import BddSpec
from api.env_spec import ENV_DESCRIPTION, Env, no_anvil_variables
from api.sandbox_spec import SandboxOptions

Arg = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
WorkspaceName = Annotated[str, StringConstraints(pattern=WORKSPACE_NAME.pattern)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


# pytest arguments Anvil refuses, and why. Everything else is passed to pytest as given.
RUNS_NO_TESTS = (
    "--collect-only --co --collectonly -h --help --version -V --fixtures --funcargs "
    "--fixtures-per-test --markers --setup-only --setup-plan"
).split()
INTERACTIVE = "--pdb --pdbcls --trace".split()
NEEDS_CACHE = (
    "--lf --last-failed --ff --failed-first --nf --new-first --lfnf --last-failed-no-failures "
    "--sw --stepwise --sw-skip --stepwise-skip --sw-reset --stepwise-reset --cache-show --cache-clear"
).split()


def _pytest_arg(arg: str) -> str:
    """Refuse arguments that would run no tests, wait for a terminal, or stop Anvil recording results.

    Paths (positional arguments, before any ``::``, and ``--option=value`` values) must stay inside
    the workspace: no absolute paths, no ``..``. The worker disables pytest's cache plugin (runs do
    not depend on each other and write nothing into the workspace), so cache options are refused.
    """
    option, _, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
    if option in RUNS_NO_TESTS:
        raise ValueError(f"{option} runs no tests, so there would be no results to record")
    if option in INTERACTIVE:
        raise ValueError(f"{option} waits for a terminal; tests run unattended")
    if option in NEEDS_CACHE:
        raise ValueError(f"{option} needs pytest's cache, which Anvil disables so runs are independent")
    if option.startswith("--anvil"):
        raise ValueError("--anvil-* options are set by the worker")
    plugin = arg.removeprefix("-p").strip()
    if plugin.startswith("no:") and any(name in plugin for name in ("workers", "anvil")):
        raise ValueError(f"disabling the plugin ({arg}) would stop Anvil recording results")
    path = value if arg.startswith("--") else ("" if arg.startswith("-") else arg)
    parts = PurePosixPath(path.split("::", 1)[0]).parts
    if path.startswith("/") or ".." in parts:
        raise ValueError(f"path {path!r} leaves the workspace; paths are relative to the workspace")
    return arg


PytestArg = Annotated[Arg, AfterValidator(_pytest_arg)]


class PytestOptions(Strict):
    args: list[PytestArg] = Field(
        default_factory=list,
        max_length=256,
        description="pytest's arguments, e.g. test paths, -k EXPR, -m MARKER; run in the workspace",
    )
    env: Env | None = Field(default=None, description=ENV_DESCRIPTION)

    _no_anvil = field_validator("env")(no_anvil_variables)


class GenericSpec(SandboxOptions, Strict):
    """Either ``steps`` (commands) or ``pytest`` (a pytest run with one step per test), not both."""

    workspace: WorkspaceName
    steps: list[GenericStep] | None = Field(default=None, min_length=1, max_length=500)
    pytest: PytestOptions | None = None

    @model_validator(mode="after")
    def _steps_or_pytest(self) -> GenericSpec:
        if self.steps is not None and self.pytest is not None:
            raise _field_error("pytest", "give either steps or pytest, not both")
        if self.steps is None and self.pytest is None:
            raise _field_error("steps", "give steps (commands to run) or pytest (a pytest run)")
        return self


def _field_error(field: str, message: str) -> ValidationError:
    # A model-level rule reported at the field it concerns, so the 422 names that field.
    error = PydanticCustomError("steps_or_pytest", message)
    return ValidationError.from_exception_data(
        "GenericSpec", [InitErrorDetails(type=error, loc=(field,), input=None)]
    )


class ManualStep(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    expected: Annotated[str, StringConstraints(max_length=5000)] | None = None


class ManualSpec(Strict):
    instructions: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    steps: list[ManualStep] = Field(min_length=1, max_length=500)


SPEC_MODELS: dict[str, type[BaseModel]] = {
    CaseKind.GENERIC: GenericSpec,
    CaseKind.MANUAL: ManualSpec,
    CaseKind.BDD: BddSpec,
}


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
