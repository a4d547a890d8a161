"""What the CLI asks git in the current directory: the commit and branch being tested, and the
files changed since a ref (``--since``). Outside a repository, or without git, it learns nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(Exception):
    """git could not answer a question the user asked explicitly (``--since``)."""


def _git(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def source_from_git(cwd: Path | None = None) -> tuple[str | None, str | None]:
    """(revision, branch) of the repository around ``cwd``; None for what git cannot say (no
    repository, no commit yet, a detached HEAD has no branch)."""
    try:
        revision = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    except (OSError, subprocess.SubprocessError):
        return None, None
    sha = revision.stdout.strip() if revision.returncode == 0 else ""
    name = branch.stdout.strip() if branch.returncode == 0 else ""
    return sha or None, name if name and name != "HEAD" else None


def changed_since(ref: str, cwd: Path | None = None) -> list[str]:
    """Paths changed between ``ref`` and HEAD (``git diff --name-only REF...HEAD``: since the
    branch left ``ref``), relative to the repository root."""
    if ref.startswith("-"):
        raise GitError(f"--since {ref!r}: a git ref cannot start with '-'")
    try:
        done = _git(["diff", "--name-only", f"{ref}...HEAD", "--"], cwd)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        raise GitError(f"git diff --name-only {ref}...HEAD failed: {done.stderr.strip() or done.returncode}")
    return [line for line in done.stdout.splitlines() if line.strip()]
