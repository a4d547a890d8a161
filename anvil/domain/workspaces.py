"""Workspace and feature-file names: what a spec may name, and where it leads on a host.

The API checks a spec against these rules when a case is saved; the worker checks again on its
own host before it runs anything.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class WorkspaceError(Exception):
    """The named workspace is invalid or missing on this worker."""


def resolve_workspace(root: Path, name: str) -> Path:
    """The workspace directory ``root/name``; refuses names that could leave the root."""
    if not WORKSPACE_NAME.match(name) or name in (".", ".."):
        raise WorkspaceError(f"workspace name {name!r} is not a plain directory name")
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise WorkspaceError(f"workspace {name!r} leaves the workspace root")
    if not path.is_dir():
        raise WorkspaceError(f"workspace {name!r} does not exist under {base} on this worker")
    return path


class FeatureError(WorkspaceError):
    """The spec's feature file is outside the workspace, or missing from it."""


def resolve_feature(workspace: Path, feature: str) -> Path:
    """The feature file ``feature`` (relative, ``.feature``) inside ``workspace``; FeatureError otherwise."""
    relative = PurePosixPath(feature)
    if relative.is_absolute() or feature.startswith("\\") or ".." in relative.parts or "\\" in feature:
        raise FeatureError(f"feature {feature!r} must be a relative path inside the workspace")
    if relative.suffix != ".feature":
        raise FeatureError(f"feature {feature!r} must name a .feature file")
    base = workspace.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise FeatureError(f"feature {feature!r} leaves the workspace (through a symbolic link)")
    if not path.is_file():
        raise FeatureError(f"feature file {feature!r} does not exist in workspace {workspace.name!r}")
    return path
