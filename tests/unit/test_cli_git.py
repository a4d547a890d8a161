"""What the CLI learns from git: revision and branch of a temporary repository, changed files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from anvil.cli.git import GitError, changed_since, source_from_git


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_revision_and_branch_come_from_the_repository(repo: Path) -> None:
    assert source_from_git(repo) == (git(repo, "rev-parse", "HEAD"), "main")
    git(repo, "checkout", "-q", "-b", "feature/pay")
    assert source_from_git(repo)[1] == "feature/pay"
    git(repo, "checkout", "-q", "--detach")
    revision, branch = source_from_git(repo)
    assert revision and branch is None  # a detached HEAD has no branch


def test_outside_a_repository_git_says_nothing(tmp_path: Path) -> None:
    assert source_from_git(tmp_path) == (None, None)


def test_changed_since_a_ref(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "src" / "b.py").write_text("b = 2\n")
    (repo / "src" / "a.py").write_text("a = 3\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    assert sorted(changed_since("main", repo)) == ["src/a.py", "src/b.py"]
    assert changed_since("HEAD", repo) == []
    with pytest.raises(GitError, match="no-such-ref"):
        changed_since("no-such-ref", repo)
    with pytest.raises(GitError, match="cannot start with"):
        changed_since("--output=/tmp/x", repo)
