"""BDD specs: the Gherkin is parsed before it is stored; bad input is refused naming the field."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil.domain.runners import validate_spec
from anvil.errors import InvalidInput
from anvil.settings import get_settings
from workers.runners.bdd import scenario_name_pattern

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspaces" / "bdd-demo"
GOOD_TEXT = """\
Feature: Cart
  Scenario: empty
    Given an empty cart
    Then the cart total is 0.00
"""


@pytest.fixture(autouse=True)
def workspace_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ANVIL_WORKSPACE_ROOT with a copy of the behave example as workspace ``bdd``."""
    root = tmp_path / "workspaces"
    shutil.copytree(EXAMPLE, root / "bdd")
    monkeypatch.setenv("ANVIL_WORKSPACE_ROOT", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def refusal(spec: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_spec("bdd", spec)
    return info.value


def test_feature_file_spec_is_stored_as_given() -> None:
    spec = {
        "workspace": "bdd",
        "feature": "features/login.feature",
        "scenario": "Wrong credentials are refused",
        "tags": "@smoke and not @slow",
    }
    assert validate_spec("bdd", spec) == spec


def test_feature_text_spec_is_stored_as_given() -> None:
    assert validate_spec("bdd", {"workspace": "bdd", "feature_text": GOOD_TEXT}) == {
        "workspace": "bdd",
        "feature_text": GOOD_TEXT,
    }


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("Feature: x\n  Scenario: a\n    Given b\n  this is no step\n", 4, 3),
        ("Scenario: no feature line\n  Given b\n", 1, 1),
        (
            "Feature: x\n  Scenario Outline: o\n    Given <a>\n    Examples:\n      | a |\n      | 1 | 2 |\n",
            6,
            7,
        ),
        ("# language: xx\nFeature: x\n", 1, 1),
    ],
)
def test_invalid_gherkin_names_line_and_column(text: str, line: int, column: int) -> None:
    error = refusal({"workspace": "bdd", "feature_text": text})

    assert error.status_code == 422
    assert error.field == "body.spec.feature_text"
    assert f"line {line}, column {column}" in error.detail
    assert error.extra["errors"][0]["field"] == "body.spec.feature_text"


def test_invalid_gherkin_in_a_workspace_file_names_the_file_line_and_column(workspace_root: Path) -> None:
    (workspace_root / "bdd" / "features" / "broken.feature").write_text(
        "Feature: broken\n\n  Scenario: a\n    Given b\n      no keyword here\n"
    )

    error = refusal({"workspace": "bdd", "feature": "features/broken.feature"})

    assert error.field == "body.spec.feature"
    assert "features/broken.feature" in error.detail
    assert "line 5, column 7" in error.detail


def test_empty_gherkin_is_refused() -> None:
    error = refusal({"workspace": "bdd", "feature_text": "# only a comment\n"})
    assert error.field == "body.spec.feature_text"
    assert "no 'Feature:'" in error.detail


@pytest.mark.parametrize(
    ("feature", "why"),
    [
        ("features/missing.feature", "does not exist"),
        ("../bdd/features/login.feature", "relative path inside the workspace"),
        ("features/../../bdd/features/login.feature", "relative path inside the workspace"),
        ("/etc/login.feature", "relative path inside the workspace"),
        ("features/app.py", "must name a .feature file"),
        ("features", "must name a .feature file"),
    ],
)
def test_feature_outside_or_missing_from_the_workspace_is_refused(feature: str, why: str) -> None:
    error = refusal({"workspace": "bdd", "feature": feature})
    assert error.field == "body.spec.feature"
    assert why in error.detail


def test_feature_reached_through_a_link_out_of_the_workspace_is_refused(
    workspace_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.feature"
    outside.write_text(GOOD_TEXT)
    (workspace_root / "bdd" / "features" / "linked.feature").symlink_to(outside)

    error = refusal({"workspace": "bdd", "feature": "features/linked.feature"})

    assert error.field == "body.spec.feature"
    assert "leaves the workspace" in error.detail


def test_unknown_workspace_is_refused() -> None:
    error = refusal({"workspace": "nowhere", "feature": "features/login.feature"})
    assert error.field == "body.spec.workspace"
    assert "does not exist" in error.detail


def test_feature_text_needs_a_features_directory(workspace_root: Path) -> None:
    (workspace_root / "bare").mkdir()
    error = refusal({"workspace": "bare", "feature_text": GOOD_TEXT})
    assert error.field == "body.spec.workspace"
    assert "features/" in error.detail


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        ({"workspace": "bdd"}, "body.spec.feature", "give feature"),
        (
            {"workspace": "bdd", "feature": "features/login.feature", "feature_text": GOOD_TEXT},
            "body.spec.feature_text",
            "not both",
        ),
        (
            {"workspace": "bdd", "feature": "features/login.feature", "tag": "@smoke"},
            "body.spec.tag",
            "Extra",
        ),
        ({"workspace": "../x", "feature": "features/login.feature"}, "body.spec.workspace", "pattern"),
        ({"workspace": "bdd", "feature_text": ""}, "body.spec.feature_text", "at least 1"),
    ],
)
def test_malformed_specs_are_refused(spec: dict[str, Any], field: str, why: str) -> None:
    error = refusal(spec)
    assert error.field == field
    assert why in error.detail


@pytest.mark.parametrize("name", ["Alice signs in", "Wrong credentials are refused", "Bob is locked out"])
def test_scenario_filter_accepts_scenarios_outlines_and_rule_members(name: str) -> None:
    spec = {"workspace": "bdd", "feature": "features/login.feature", "scenario": name}
    assert validate_spec("bdd", spec)["scenario"] == name


def test_scenario_filter_naming_no_scenario_is_refused() -> None:
    error = refusal({"workspace": "bdd", "feature": "features/login.feature", "scenario": "Alice signs"})
    assert error.field == "body.spec.scenario"
    assert "no scenario named 'Alice signs'" in error.detail
    assert "'Alice signs in'" in error.detail


@pytest.mark.parametrize("tags", ["@smoke and", "(@smoke or @slow", "not"])
def test_invalid_tag_expression_is_refused(tags: str) -> None:
    error = refusal({"workspace": "bdd", "feature": "features/login.feature", "tags": tags})
    assert error.field == "body.spec.tags"
    assert "tag expression" in error.detail


@pytest.mark.parametrize(
    ("scenario_name", "selected"),
    [
        ("Wrong credentials (x)", True),
        ("Wrong credentials (x) -- @1.2 unknown name", True),
        ("Wrong credentials (x) and more", False),
        ("Not Wrong credentials (x)", False),
        ("Wrong credentials", False),
    ],
)
def test_scenario_filter_selects_the_named_scenario_and_its_outline_rows(
    scenario_name: str, selected: bool
) -> None:
    # behave searches --name as a regular expression in the names of scenarios (outline rows too).
    assert bool(re.search(scenario_name_pattern("Wrong credentials (x)"), scenario_name)) is selected
