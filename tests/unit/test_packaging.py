"""pyproject.toml lists Anvil's packages by name (a wheel installs alembic/ as anvil_migrations,
which `find` cannot do): a package added to the sources must be added there, or wheels lack it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("anvil", "api", "db", "scheduler", "workers")


def test_every_package_of_the_sources_is_in_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    # Every directory holding a module, with an __init__.py or without (a namespace package).
    found = {
        ".".join(module.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL
        for module in (ROOT / top).rglob("*.py")
    }
    assert sorted(found - listed) == [], "add these to [tool.setuptools] packages in pyproject.toml"
    assert setuptools["package-dir"] == {"anvil_migrations": "alembic"}
    assert sorted(listed - found) == ["anvil_migrations", "anvil_migrations.versions"]
