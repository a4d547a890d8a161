"""Imports point down the layers, and no module imports itself back through others.

    anvil/cli                      the top: nothing imports it
    api/   scheduler/   workers/   (api and scheduler reach the broker only through workers.publish)
    db/
    anvil core: settings, errors, domain/, hardening

Every import counts, also those inside functions: a circle that only closes at run time is still
a circle to whoever reads the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("anvil", "api", "db", "workers", "scheduler")
# What each layer may import besides itself and the core.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "db": set(),
    "workers": {"db"},
    "api": {"db", "workers.publish"},
    "scheduler": {"db", "workers.publish"},
    "cli": {"db", "api", "workers", "scheduler"},
}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if module == "anvil.cli" or module.startswith("anvil.cli."):
        return "cli"
    return "core" if top == "anvil" else top


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The Anvil modules ``path`` imports (``from x import y`` counts as x.y when y is a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(path, known)) for name, path in known.items()}


def allowed(source: str, target: str) -> bool:
    src, dst = layer(source), layer(target)
    if dst in (src, "core") and not (src == "core" and dst == "cli"):
        return True
    return any(target == rule or target.startswith(rule + ".") or rule == dst for rule in ALLOWED[src])


def test_every_import_points_down_the_layers() -> None:
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if not allowed(source, target)
    )
    assert wrong == []


def test_nothing_imports_the_cli() -> None:
    outside = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if layer(target) == "cli" and layer(source) != "cli"
    )
    assert outside == []
    # Within the CLI, the assembled app is imported by nobody but ``python -m anvil.cli``.
    importers = [s for s, targets in graph().items() if "anvil.cli.main" in targets]
    assert set(importers) <= {"anvil.cli.__main__"}


def test_there_is_no_import_circle() -> None:
    edges = graph()
    # A package's __init__ is imported with each of its modules: that edge is not a choice.
    for name in edges:
        edges[name] = {t for t in edges[name] if t in edges and not name.startswith(t + ".")}
    done: set[str] = set()
    circles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circles.append(path[path.index(name) :] + [name])
            return
        if name in done:
            return
        for target in sorted(edges[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])
    assert circles == []


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        ("db.executions", "anvil.domain.states", True),
        ("db.executions", "workers.publish", False),
        ("api.routes.health", "workers.publish", True),
        ("api.routes.health", "workers.celery_app", False),
        ("anvil.domain.policy", "db.models", False),
        ("workers.execute", "api.app", False),
        ("anvil.cli.main", "api.app", True),
        ("anvil.settings", "anvil.cli.main", False),
    ],
)
def test_the_rule_itself(source: str, target: str, ok: bool) -> None:
    assert allowed(source, target) is ok
