"""Workspaces: the named directories under ANVIL_WORKSPACE_ROOT that test cases run in.

Workers resolve a case's workspace on their own host, so every worker host must have the same
directories at the same path (a shared volume). This listing is what the API host sees there.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, Field

from anvil.domain.workspaces import WorkspaceError, resolve_workspace
from api.deps import SettingsDep, Viewer

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])

# Directories never searched for tests: tool caches and virtual environments.
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"}
# A bound on the files looked at per workspace, so a huge tree cannot stall the request.
MAX_FILES = 20_000


class WorkspacePublic(BaseModel):
    name: str
    kinds: list[str] = Field(
        description="what the workspace holds: 'pytest' (pytest tests or configuration), "
        "'bdd' (a features/ directory for behave)"
    )


class WorkspaceList(BaseModel):
    root: str = Field(description="ANVIL_WORKSPACE_ROOT as the API host resolves it")
    items: list[WorkspacePublic]


@router.get("", response_model=WorkspaceList)
def list_workspaces(_: Viewer, settings: SettingsDep) -> WorkspaceList:
    """Workspaces a test case may name, with the kinds of tests found in each, sorted by name.

    Only what a worker would accept is listed: directories inside the root. A symlink that leads
    out of the root (e.g. to /etc) is left out, as workers refuse it.
    """
    root = settings.workspace_root.resolve()
    items = []
    if root.is_dir():
        for path in sorted(root.iterdir(), key=lambda p: p.name):
            try:
                workspace = resolve_workspace(root, path.name)
            except (WorkspaceError, OSError):
                continue
            items.append(WorkspacePublic(name=path.name, kinds=detect_kinds(workspace)))
    return WorkspaceList(root=str(root), items=items)


def detect_kinds(path: Path) -> list[str]:
    kinds = []
    try:
        if has_pytest(path):
            kinds.append("pytest")
        if (path / "features").is_dir():
            kinds.append("bdd")
    except OSError:  # unreadable: listed, with what was found before
        pass
    return kinds


def has_pytest(path: Path) -> bool:
    """pytest configuration at the top, or a test module / conftest.py anywhere below."""
    if (path / "pytest.ini").is_file() or _configured(path):
        return True
    seen = 0
    for _folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".py") and (
                name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
            ):
                return True
        seen += len(files)
        if seen > MAX_FILES:
            return False
    return False


def _configured(path: Path) -> bool:
    pyproject = path / "pyproject.toml"
    if pyproject.is_file():
        try:
            if "pytest" in tomllib.loads(pyproject.read_text(errors="replace")).get("tool", {}):
                return True
        except tomllib.TOMLDecodeError:
            pass
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        config = path / name
        if config.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read_string(config.read_text(errors="replace"))
            except configparser.Error:
                continue
            if parser.has_section(section):
                return True
    return False
