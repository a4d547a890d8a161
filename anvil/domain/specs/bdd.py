"""BDD specs (kind ``bdd``): a behave feature of a workspace, checked before it is stored.

The Gherkin is parsed with the official Cucumber parser (gherkin-official), so a syntax error is
refused with its line and column instead of failing later on a worker. The feature file must be
inside the workspace, which is looked up under this server's ANVIL_WORKSPACE_ROOT (workers use the
same path on every host). ``tags`` is parsed with behave's own tag-expression parser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from behave.tag_expression import make_tag_expression
from gherkin.errors import CompositeParserException, ParserError, ParserException
from gherkin.parser import Parser
from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from anvil.domain.gates import GATE_HELP, GateRules
from anvil.domain.specs.base import SHARDS_DESCRIPTION, Shards, Strict, WorkspaceName, field_error
from anvil.domain.specs.env import ENV_DESCRIPTION, Env, no_anvil_variables
from anvil.domain.specs.sandbox import SandboxOptions
from anvil.domain.workspaces import WorkspaceError, resolve_feature, resolve_workspace
from anvil.settings import get_settings

MAX_FEATURE_CHARS = 200_000
GHERKIN_ERRORS_SHOWN = 3
LOCATION_PREFIX = re.compile(r"^\(\d+:\d+\): ")


class BddSpec(SandboxOptions, Strict):
    """``feature`` (a .feature file of the workspace) or ``feature_text`` (Gherkin), not both."""

    workspace: WorkspaceName
    feature: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    feature_text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FEATURE_CHARS)] | None = None
    scenario: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    tags: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    env: Env | None = Field(default=None, description=ENV_DESCRIPTION)
    shards: Shards | None = Field(default=None, description=SHARDS_DESCRIPTION + " (default 1)")
    gate: GateRules | None = Field(default=None, description=GATE_HELP)

    _no_anvil = field_validator("env")(no_anvil_variables)

    @field_validator("tags")
    @classmethod
    def _tag_expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                make_tag_expression(value)
            except Exception as exc:  # cucumber_tag_expressions.TagExpressionError, among others
                message = f"not a valid behave tag expression: {exc}"
                raise PydanticCustomError("tag_expression", message) from exc
        return value

    @model_validator(mode="after")
    def _feature_parses(self) -> BddSpec:
        if self.feature is not None and self.feature_text is not None:
            raise _field_error("feature_text", "give either feature or feature_text, not both")
        if self.feature is None and self.feature_text is None:
            raise _field_error("feature", "give feature (a .feature file of the workspace) or feature_text")
        try:
            workspace = resolve_workspace(get_settings().workspace_root, self.workspace)
        except WorkspaceError as exc:
            raise _field_error("workspace", str(exc).replace("on this worker", "on this server")) from None
        if self.feature is not None:
            field, where, text = "feature", f"{self.feature}: ", _read_feature(workspace, self.feature)
        else:
            assert self.feature_text is not None
            field, where, text = "feature_text", "", self.feature_text
            if not (workspace / "features").is_dir():
                raise _field_error(
                    "workspace", f"workspace {self.workspace!r} has no features/ directory for feature_text"
                )
        names = scenario_names(text, field=field, where=where)
        if self.scenario is not None and self.scenario not in names:
            known = ", ".join(repr(n) for n in names[:20]) or "none"
            raise _field_error(
                "scenario", f"the feature has no scenario named {self.scenario!r} (it has {known})"
            )
        return self


def scenario_names(text: str, *, field: str = "feature_text", where: str = "") -> list[str]:
    """Names of the scenarios and outlines (in rules too) of a Gherkin document; refuses bad Gherkin."""
    try:
        document: Any = Parser().parse(text)
    except CompositeParserException as exc:
        shown = "; ".join(_describe(e) for e in exc.errors[:GHERKIN_ERRORS_SHOWN])
        raise _field_error(field, where + shown) from None
    except ParserException as exc:
        raise _field_error(field, where + _describe(exc)) from None
    except ParserError as exc:
        raise _field_error(field, f"{where}not valid Gherkin: {exc}") from None
    feature = document.get("feature")
    if feature is None:
        raise _field_error(field, f"{where}no 'Feature:' found: the Gherkin document is empty")
    names: list[str] = []
    for child in feature["children"]:
        members = child["rule"]["children"] if "rule" in child else [child]
        names += [member["scenario"]["name"] for member in members if "scenario" in member]
    return names


def _describe(error: ParserException) -> str:
    location = error.location
    message = LOCATION_PREFIX.sub("", str(error))
    return f"Gherkin syntax error at line {location['line']}, column {location.get('column') or 0}: {message}"


def _read_feature(workspace: Path, feature: str) -> str:
    try:
        path = resolve_feature(workspace, feature)
    except WorkspaceError as exc:
        raise _field_error("feature", str(exc)) from None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _field_error("feature", f"feature file {feature!r} is not UTF-8 text") from None
    except OSError as exc:
        raise _field_error("feature", f"feature file {feature!r} cannot be read: {exc.strerror}") from None


def _field_error(field: str, message: str) -> ValidationError:
    return field_error("BddSpec", field, message, kind="bdd_spec")
