"""Per-kind spec validation: good specs are normalised, bad ones refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from anvil.domain.runners import validate_spec
from anvil.errors import InvalidInput


def spec(**step: Any) -> dict[str, Any]:
    return {"workspace": "demo", "steps": [{"run": ["true"], **step}]}


def refusal(kind: str, body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_spec(kind, body)
    return info.value


def test_good_spec_is_normalised_with_defaults() -> None:
    stored = validate_spec(
        "generic",
        {
            "workspace": "demo-1",
            "steps": [
                {"run": ["echo", "hi"]},
                {
                    "name": "check",
                    "run": ["sh", "-c", "exit 3"],
                    "expect_exit": 3,
                    "expect_output": r"^ok\b",
                    "timeout_s": 5,
                    "env": {"MY_VAR": "1"},
                },
            ],
        },
    )
    assert stored == {
        "workspace": "demo-1",
        "steps": [
            # Defaults filled in; absent optional fields (name, regex, timeout) left out.
            {"run": ["echo", "hi"], "expect_exit": 0, "env": {}},
            {
                "name": "check",
                "run": ["sh", "-c", "exit 3"],
                "expect_exit": 3,
                "expect_output": r"^ok\b",
                "timeout_s": 5.0,
                "env": {"MY_VAR": "1"},
            },
        ],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workspace": "demo", "steps": [{"run": ["true"]}], "extra": 1}, "body.spec.extra"),
        (spec(comand=["x"]), "body.spec.steps.0.comand"),
    ],
)
def test_unknown_keys_are_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    err = refusal("generic", body)
    assert err.field == field
    assert field in err.detail
    assert err.extra["errors"][0]["type"] == "extra_forbidden"


def test_bad_regex_is_refused() -> None:
    err = refusal("generic", spec(expect_output="(unclosed"))
    assert err.field == "body.spec.steps.0.expect_output"
    assert "regular expression" in err.detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (spec(run=[]), "body.spec.steps.0.run"),
        (spec(run=[""]), "body.spec.steps.0.run.0"),
        (spec(run="echo hi"), "body.spec.steps.0.run"),
        ({"workspace": "demo", "steps": [{}]}, "body.spec.steps.0.run"),
        ({"workspace": "demo", "steps": []}, "body.spec.steps"),
        ({"steps": [{"run": ["true"]}]}, "body.spec.workspace"),
        (spec(expect_exit=256), "body.spec.steps.0.expect_exit"),
        (spec(timeout_s=0), "body.spec.steps.0.timeout_s"),
    ],
)
def test_missing_or_empty_run_and_out_of_range_values(body: dict[str, Any], field: str) -> None:
    assert refusal("generic", body).field == field


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".hidden", "x" * 129])
def test_workspace_must_be_a_plain_name(name: str) -> None:
    err = refusal("generic", {"workspace": name, "steps": [{"run": ["true"]}]})
    assert err.field == "body.spec.workspace"


def test_reserved_anvil_env_is_refused() -> None:
    err = refusal("generic", spec(env={"OK": "1", "ANVIL_DATABASE_URL": "postgresql://x"}))
    assert err.field == "body.spec.steps.0.env"
    assert "ANVIL_DATABASE_URL" in err.detail


def test_env_names_must_be_identifiers() -> None:
    err = refusal("generic", spec(env={"BAD-NAME": "1"}))
    assert err.field.startswith("body.spec.steps.0.env")


@pytest.mark.parametrize("kind", ["shell", "bdd-ish", ""])
def test_unsupported_kind_is_refused(kind: str) -> None:
    err = refusal(kind, spec())
    assert err.field == "body.kind"
    assert repr(kind) in err.detail


def test_every_error_is_listed_not_only_the_first() -> None:
    err = refusal("generic", {"workspace": "../up", "steps": [{"run": []}]})
    fields = {e["field"] for e in err.extra["errors"]}
    assert fields == {"body.spec.workspace", "body.spec.steps.0.run"}
