"""The example CI workflows (examples/ci/) are valid YAML and use only options the CLI has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from anvil.cli.cases import app as cases_app
from anvil.cli.submit import app as submit_app
from anvil.cli.suites import app as suites_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
APPS = {"submit": submit_app, "cases": cases_app, "suites": suites_app}


def commands(path: Path) -> list[list[str]]:
    """Every `anvil <group> <command> …` the file runs, as words (CI expressions kept as words)."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", "\n".join(lines))
    found = []
    for match in re.finditer(r"\banvil (submit|cases|suites) [^\n|&]*(?:\n {6,}--[^\n]*)*", text):
        words = shlex.split(match.group(0).replace("\\\n", " "))
        found.append(words[: words.index("|")] if "|" in words else words)
    return found


def options_of(group: str, command: str) -> set[str]:
    click_group = typer.main.get_command(APPS[group])
    sub = click_group.commands[command]  # type: ignore[attr-defined]
    return {opt for param in sub.params for opt in param.opts + param.secondary_opts}


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_examples_parse_and_their_anvil_options_exist(name: str) -> None:
    path = EXAMPLES / name
    assert isinstance(yaml.safe_load(path.read_text()), dict)
    found = commands(path)
    assert any(words[:3] == ["anvil", "submit", "suite"] and "--gate" in words and "--wait" in words
               for words in found), found  # fmt: skip
    for words in found:
        known = options_of(words[1], words[2])
        used = {w.split("=", 1)[0] for w in words if w.startswith("-") and w != "-"}
        assert used <= known, (words, used - known)
