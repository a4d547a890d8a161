"""pytest specs (kind ``pytest``): their shape, the arguments Anvil refuses, and the old form
(a generic spec holding ``pytest``) still taken."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.domain.runners import upgrade_legacy, validate_spec
from anvil.errors import InvalidInput


def pytest_spec(*args: str, **extra: Any) -> dict[str, Any]:
    return {"workspace": "pytest-demo", "args": list(args), **extra}


def refusal(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_spec("pytest", body)
    return info.value


def test_pytest_spec_is_stored_as_given() -> None:
    args = ["tests/test_basics.py::test_addition", "tests/test_params.py", "-k", "not slow", "-m", "smoke"]
    assert validate_spec("pytest", pytest_spec(*args)) == {"workspace": "pytest-demo", "args": args}


def test_no_args_runs_the_whole_workspace() -> None:
    stored = validate_spec("pytest", {"workspace": "w"})
    assert stored == {"workspace": "w", "args": []}


def test_the_old_generic_form_is_taken_as_kind_pytest() -> None:
    old = {"workspace": "w", "network": False, "pytest": {"args": ["-q"], "env": {"A": "1"}}}
    kind, spec = upgrade_legacy("generic", old)
    assert (kind, validate_spec(kind, spec)) == (
        "pytest",
        {"workspace": "w", "network": False, "args": ["-q"], "env": {"A": "1"}},
    )
    steps = {"workspace": "w", "steps": [{"run": ["true"]}]}
    assert upgrade_legacy("generic", steps) == ("generic", steps)  # only the pytest form changes


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (pytest_spec(steps=[{"run": ["true"]}]), "body.spec.steps", "Extra inputs"),
        ({"args": []}, "body.spec.workspace", "Field required"),
        ({"workspace": "w", "args": [], "argz": []}, "body.spec.argz", "Extra inputs"),
        ({**pytest_spec(), "junit": True}, "body.spec.junit", "Extra inputs"),
        ({"workspace": "w", "args": "-k x"}, "body.spec.args", "valid list"),
        ({"workspace": "w", "args": [""]}, "body.spec.args.0", "at least 1"),
    ],
)
def test_shape_errors_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    err = refusal(body)
    assert err.field == field
    assert message in err.detail


@pytest.mark.parametrize(
    ("args", "index", "why"),
    [
        (["-p", "no:workers.pytest_plugin"], 1, "stop Anvil recording"),
        (["-pno:anvil-recorder"], 0, "stop Anvil recording"),
        (["--anvil-report=/tmp/x"], 0, "set by the worker"),
        (["tests", "--collect-only"], 1, "runs no tests"),
        (["--co"], 0, "runs no tests"),
        (["--fixtures"], 0, "runs no tests"),
        (["--pdb"], 0, "waits for a terminal"),
        (["--lf"], 0, "needs pytest's cache"),
        (["--stepwise"], 0, "needs pytest's cache"),
        (["../other-workspace/tests"], 0, "leaves the workspace"),
        (["/etc/tests::test_x"], 0, "leaves the workspace"),
        (["--rootdir", "/"], 1, "leaves the workspace"),
        (["--confcutdir=../.."], 0, "leaves the workspace"),
    ],
)
def test_arguments_that_would_break_recording_are_refused(args: list[str], index: int, why: str) -> None:
    err = refusal(pytest_spec(*args))
    assert err.field == f"body.spec.args.{index}"
    assert why in err.detail


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "no:cacheprovider"],
        ["-x", "--maxfail=2", "-q", "-rA", "--tb=short"],
        ["tests/test_params.py::test_square[../x]"],  # a parameter id, not a path
        ["-W", "error::DeprecationWarning", "-o", "xfail_strict=true"],
        ["--junitxml=reports/junit.xml", "--durations=5"],
    ],
)
def test_ordinary_arguments_pass(args: list[str]) -> None:
    assert validate_spec("pytest", pytest_spec(*args))["args"] == args
