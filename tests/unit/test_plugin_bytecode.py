"""The worker caches pytest's rewritten bytecode of the installed plugins (workers/plugin_bytecode.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from workers.plugin_bytecode import marker_path, warm

# anyio declares a pytest11 entry point (its pytest_plugin module): pytest rewrites it.
CACHE = Path(anyio.__file__).parent / "__pycache__"


def _rewritten_plugin_bytecode() -> list[Path]:
    return list(CACHE.glob("pytest_plugin.*-pytest-*.pyc"))


def _writable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip where nothing can be cached; the marker goes to the test's own directory."""
    if not os.access(CACHE, os.W_OK):
        pytest.skip(f"{CACHE} is read-only to this user: nothing can be cached there")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "markers"))
    (tmp_path / "markers").mkdir()


def test_the_warm_up_caches_the_plugins_bytecode_once_per_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _writable_cache(tmp_path, monkeypatch)
    for old in _rewritten_plugin_bytecode():
        old.unlink()

    assert warm() is True
    assert _rewritten_plugin_bytecode(), "pytest wrote no rewritten bytecode for anyio's plugin"
    assert marker_path().exists()
    assert warm() is False  # done for this installation: the next worker does not run it again


def test_a_test_process_that_writes_no_bytecode_still_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the sandbox's pytest does (PYTHONDONTWRITEBYTECODE): with the cache it does not have to
    rewrite anyio's plugin; pytest's trace says which modules it rewrote and which it read."""
    _writable_cache(tmp_path, monkeypatch)
    warm()
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    # PYTEST_DEBUG: pytest's internal trace on stderr from its start, the rewriting hook's too.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DEBUG": "1"}
    traced = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_one.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert traced.returncode == 0, traced.stdout[-2000:] + traced.stderr[-2000:]
    lines = traced.stderr.splitlines()
    assert any("found cached rewritten pyc for" in line and "anyio" in line for line in lines)
    assert not any("rewriting" in line and "anyio" in line and "pytest_plugin" in line for line in lines)
