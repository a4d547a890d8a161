"""`pip install .` (not editable): Anvil built as a wheel and installed in a fresh virtual environment
migrates an empty PostgreSQL database and runs the sample case, from a directory outside the
checkout, so nothing is read from the sources.

Slow: building the wheel and installing it with its dependencies into a new environment takes
about half a minute with a warm pip cache (much longer with a cold one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from anvil.migrate import ROOT
from tests.conftest import PG_ADMIN, _admin, _drop, sqlalchemy_url
from tests.e2e.conftest import free_port
from tests.e2e.test_dev import descendants, dev_env, project_dir

pytestmark = pytest.mark.slow

# What a wheel is built from: the checkout without what it does not ship (like .dockerignore).
NOT_BUILT_FROM = shutil.ignore_patterns(
    ".git", ".venv", ".anvil", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "tests", "bench", "examples", "workspaces",
)  # fmt: skip


def run(argv: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; fail the test with its output when it does not exit 0."""
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a new virtual environment with Anvil installed from a wheel (and its dependencies)."""
    base = tmp_path_factory.mktemp("install")
    # A copy, so the build leaves no build/ in the checkout and no stale file there gets in.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_BUILT_FROM)
    started = time.monotonic()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "wheels", source], cwd=base)
    built = time.monotonic()
    (wheel,) = (base / "wheels").glob("anvil-*.whl")
    run([sys.executable, "-m", "venv", base / "venv"], cwd=base)
    bin_dir = base / "venv" / "bin"
    run([bin_dir / "pip", "install", "-q", wheel], cwd=base)
    installed_s = time.monotonic() - built
    print(f"wheel built in {built - started:.1f}s, installed with its dependencies in {installed_s:.1f}s")
    return bin_dir


def installed_env() -> dict[str, str]:
    """This environment without the session's ANVIL_* settings and without a PYTHONPATH into the checkout."""
    env = dev_env()
    env.pop("PYTHONPATH", None)
    return env


def test_the_wheel_holds_anvil_and_its_migrations(installed: Path, tmp_path: Path) -> None:
    code = (
        "import anvil, anvil.migrate as m, importlib.util as u; print(anvil.__file__); "
        "print(m.script_location()); print(u.find_spec('api.ui').submodule_search_locations[0])"
    )
    out = run([installed / "python", "-c", code], cwd=tmp_path, env=installed_env()).split()
    site = installed.parent / "lib"
    assert Path(out[0]).is_relative_to(site), out
    assert Path(out[1]).is_relative_to(site) and Path(out[1]).name == "anvil_migrations", out
    shipped = {p.name for p in (Path(out[1]) / "versions").glob("*.py")}
    assert shipped == {p.name for p in (ROOT / "alembic" / "versions").glob("*.py")}
    assert (Path(out[1]) / "script.py.mako").is_file()
    # The web interface's templates and static files (pyproject.toml package-data).
    ui = Path(out[2])
    assert ui.is_relative_to(site), out
    assert {p.name for p in (ui / "templates").glob("*.html")} == {
        p.name for p in (ROOT / "api" / "ui" / "templates").glob("*.html")
    }
    assert (ui / "static" / "htmx.min.js").is_file() and (ui / "static" / "anvil.css").is_file()


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"anvil_install_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    yield name
    _drop(name)


def test_anvil_db_upgrade_migrates_an_empty_database(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    from db.models import Base

    env = {**installed_env(), "ANVIL_DATABASE_URL": sqlalchemy_url(empty_database)}
    run([installed / "anvil", "db", "upgrade"], cwd=tmp_path, env=env, timeout=120)

    dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{empty_database}"
    with psycopg.connect(dsn) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert revision == max(p.name.split("_", 1)[0] for p in (ROOT / "alembic" / "versions").glob("0*.py"))


def test_anvil_dev_demo_runs_the_sample_case_to_passed(installed: Path, tmp_path: Path) -> None:
    # The sample case and its workspace, as a user's project holds them; everything else is the wheel's.
    cwd = project_dir(tmp_path)
    options = ["--demo", "--exit-after-demo", "--no-flower", "--broker", "filesystem"]
    argv = [installed / "anvil", "dev", *options, "--port", str(free_port())]
    log = tmp_path / "dev.log"
    proc = subprocess.Popen(
        [str(a) for a in argv], cwd=cwd, env=installed_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        # --exit-after-demo gives up by itself after start-up (90 s) and the demo (180 s).
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        left = descendants(proc.pid)
        proc.kill()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"anvil dev --exit-after-demo still running:\n{log.read_text(errors='replace')}")
    out = log.read_text(errors="replace")
    assert code == 0, out
    assert "demo   | PASSED" in out and "the sample case PASSED" in out, out
    assert (cwd / ".anvil" / "anvil.db").is_file()
