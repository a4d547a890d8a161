"""The pytest form of a generic spec: exactly one of steps or pytest, and the arguments Anvil refuses."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.errors import InvalidInput
from api.specs import validate_spec


def pytest_spec(*args: str, **extra: Any) -> dict[str, Any]:
    return {"workspace": "pytest-demo", "pytest": {"args": list(args)}, **extra}


def refusal(body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_spec("generic", body)
    return info.value


def test_pytest_spec_is_stored_as_given() -> None:
    args = ["tests/test_basics.py::test_addition", "tests/test_params.py", "-k", "not slow", "-m", "smoke"]
    assert validate_spec("generic", pytest_spec(*args)) == {
        "workspace": "pytest-demo",
        "pytest": {"args": args},
    }


def test_no_args_runs_the_whole_workspace() -> None:
    stored = validate_spec("generic", {"workspace": "w", "pytest": {}})
    assert stored == {"workspace": "w", "pytest": {"args": []}}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (pytest_spec(steps=[{"run": ["true"]}]), "body.spec.pytest", "either steps or pytest, not both"),
        ({"workspace": "w"}, "body.spec.steps", "give steps"),
        ({"workspace": "w", "pytest": {"args": [], "argz": []}}, "body.spec.pytest.argz", "Extra inputs"),
        ({**pytest_spec(), "junit": True}, "body.spec.junit", "Extra inputs"),
        ({"workspace": "w", "pytest": {"args": "-k x"}}, "body.spec.pytest.args", "valid list"),
        ({"workspace": "w", "pytest": {"args": [""]}}, "body.spec.pytest.args.0", "at least 1"),
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
    assert err.field == f"body.spec.pytest.args.{index}"
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
    assert validate_spec("generic", pytest_spec(*args))["pytest"]["args"] == args
