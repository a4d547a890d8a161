"""pytest specs (kind ``pytest``): one pytest run in a workspace, one step per test item."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from anvil.domain.gates import GATE_HELP, GateRules
from anvil.domain.shards import xdist_option
from anvil.domain.specs.base import SHARDS_DESCRIPTION, Arg, Shards, Strict, WorkspaceName, field_error
from anvil.domain.specs.env import ENV_DESCRIPTION, Env, no_anvil_variables
from anvil.domain.specs.sandbox import SandboxOptions

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


class PytestSpec(SandboxOptions, Strict):
    workspace: WorkspaceName
    args: list[PytestArg] = Field(
        default_factory=list,
        max_length=256,
        description="pytest's arguments, e.g. test paths, -k EXPR, -m MARKER; run in the workspace",
    )
    env: Env | None = Field(default=None, description=ENV_DESCRIPTION)
    shards: Shards | None = Field(default=None, description=SHARDS_DESCRIPTION + " (default 1)")
    gate: GateRules | None = Field(default=None, description=GATE_HELP)

    _no_anvil = field_validator("env")(no_anvil_variables)

    @model_validator(mode="after")
    def _shards_without_xdist(self) -> PytestSpec:
        option = xdist_option(self.args) if self.shards not in (None, 1) else None
        if option is not None:
            raise field_error(
                "PytestSpec",
                "shards",
                f"shards and pytest-xdist's {option} do not mix: shards already run in parallel",
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _options_under_pytest(cls, data: Any) -> Any:
        """pytest's options may also come grouped, ``{"workspace": …, "pytest": {"args": […],
        "shards": 2}}`` (the shape older releases stored): the same as giving them beside workspace."""
        if isinstance(data, dict) and isinstance(data.get("pytest"), dict):
            inner = data["pytest"]
            clash = sorted(set(inner) & (set(data) - {"pytest"}))
            if clash:
                raise ValueError(f"{', '.join(clash)} given both at the top and under pytest")
            data = {**{k: v for k, v in data.items() if k != "pytest"}, **inner}
        return data
