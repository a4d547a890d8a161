"""What the sharding benchmark (bench/sharding.py) sets up and always takes down again.

- A venv of its own (cached under ``~/.cache/anvil-bench/``) holding Anvil (editable, from this
  checkout), the third-party project under test (from its pinned sdist, downloaded from PyPI
  and checked against a pinned hash) and that project's test dependencies: the worker runs tests
  with its own interpreter, so ``anvil api`` and ``anvil worker`` run from this venv, and so do the
  plain ``pytest`` and ``pytest -n 2`` runs they are compared with.
- A database of its own (created, migrated, dropped), a private ``redis-server`` on a free port
  (or a given, empty Redis DB, flushed at the end), a temporary workspace root, and the processes,
  all stopped at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent

# The third-party suite: attrs's own tests (about 1,400, half of them hypothesis property tests;
# 12-16 s with plain pytest on the 2-core machine). Its tests import the installed attrs
# (--import-mode=importlib in its pytest settings), so the sdist is installed into the venv too.
PROJECT, VERSION = "attrs", "26.1.0"
SDIST = f"{PROJECT}-{VERSION}.tar.gz"
SDIST_SHA256 = "d03ceb89cb322a8fd706d4fb91940737b6642aa36998fe130a9bc96c985eff32"
TEST_DEPS = ("hypothesis==6.170.17", "pympler==1.1", "cloudpickle==3.1.3", "pytest-xdist==3.8.0")
# The same arguments for every run of the suite; a fixed hypothesis seed keeps runs comparable.
SUITE_ARGS = ["tests", "--hypothesis-seed=0"]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "anvil-bench"


def _run(argv: list[str], what: str, **kwargs: Any) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def ensure_venv(cache: Path) -> Path:
    """The bench venv's interpreter; (re)built when Anvil's dependencies or the pins changed."""
    venv = cache / "sharding-venv"
    python = venv / "bin" / "python"
    key = hashlib.sha256(
        json.dumps([SDIST_SHA256, TEST_DEPS, sys.version, (ROOT / "pyproject.toml").read_text()]).encode()
    ).hexdigest()
    marker = venv / "anvil-bench.key"
    if python.exists() and marker.exists() and marker.read_text() == key:
        return python
    print(f"building the bench venv in {venv} (once; a minute or two)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    sdist = ensure_sdist(python, cache / "sdists")
    _run(
        [str(python), "-m", "pip", "install", "-e", str(ROOT), str(sdist), *TEST_DEPS],
        "installing Anvil, the project and its test dependencies",
    )
    marker.write_text(key)
    return python


def ensure_sdist(python: Path, folder: Path) -> Path:
    """The project's pinned sdist from PyPI (downloaded once), checked against its hash."""
    path = folder / SDIST
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _run(
            [str(python), "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-d", str(folder),
             f"{PROJECT}=={VERSION}"],
            f"downloading the {PROJECT} {VERSION} sdist",
        )  # fmt: skip
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        path.unlink()
        raise RuntimeError(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}; removed, run again")
    return path


def unpack_suite(sdist: Path, workspace: Path) -> None:
    """The sdist's contents (tests included) as the workspace ``workspace``."""
    with tarfile.open(sdist) as archive:
        archive.extractall(workspace.parent, filter="data")
    (workspace.parent / SDIST.removesuffix(".tar.gz")).rename(workspace)


def write_sleep_suite(workspace: Path, *, tests: int, seed: int, per_file: int = 20) -> dict[str, float]:
    """``tests`` tests that each sleep a fixed pseudo-random 50-500 ms; their node ids -> seconds."""
    rng = random.Random(seed)
    sleeps: dict[str, float] = {}
    (workspace / "tests").mkdir(parents=True)
    for start in range(0, tests, per_file):
        name = f"tests/test_sleep_{start // per_file:02d}.py"
        body = "import time\n"
        for i in range(start, min(start + per_file, tests)):
            seconds = round(rng.uniform(0.05, 0.5), 3)
            sleeps[f"{name}::test_{i:03d}"] = seconds
            body += f"\n\ndef test_{i:03d}():\n    time.sleep({seconds})\n"
        (workspace / name).write_text(body)
    return sleeps


@dataclass
class Stack:
    """What one bench run created, so that cleanup removes exactly that."""

    python: Path  # the bench venv's interpreter: API, workers and the plain pytest runs
    pg_admin: str
    redis_url: str | None  # None: start a private redis-server
    dbname: str = field(default_factory=lambda: f"anvil_bench_shard_{uuid.uuid4().hex[:8]}")
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="anvil-bench-shard-")))
    children: list[Any] = field(default_factory=list)  # anvil.cli.processes.Child
    redis_proc: subprocess.Popen[bytes] | None = None
    db_created: bool = False
    api_url: str = ""
    token: str = ""

    @property
    def database_url(self) -> str:
        base = self.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{self.dbname}"

    @property
    def workspaces(self) -> Path:
        return self.tmp / "workspaces"

    @property
    def logs(self) -> Path:
        return self.tmp / "logs"

    def admin_sql(self, sql: str) -> None:
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(sql)

    def pg_backends(self) -> list[int]:
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.dbname])
            return [int(pid) for (pid,) in rows]

    def setup(self) -> None:
        """Redis, the database, and the environment every Anvil process (and module here) reads."""
        self.workspaces.mkdir()
        self.logs.mkdir()
        if self.redis_url is None:
            self.redis_url = self._start_redis()
        elif redis.Redis.from_url(self.redis_url).dbsize():
            raise SystemExit(f"{self.redis_url} is not empty; give an unused DB with --redis-url")
        os.environ.update(
            ANVIL_DATABASE_URL=self.database_url,
            ANVIL_REDIS_URL=self.redis_url,
            ANVIL_SECRET_KEY=secrets.token_hex(32),
            ANVIL_WORKSPACE_ROOT=str(self.workspaces),
            ANVIL_DATA_DIR=str(self.tmp / ".anvil"),
            ANVIL_LOG_LEVEL="INFO",
        )
        from anvil.migrate import upgrade
        from anvil.settings import get_settings

        get_settings.cache_clear()
        self.admin_sql(f'CREATE DATABASE "{self.dbname}"')
        self.db_created = True
        upgrade(self.database_url)

    def _start_redis(self) -> str:
        from anvil.cli.bootstrap import free_port

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: install it or give --redis-url")
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.logs / "redis.log", "ab") as out:
            self.redis_proc = subprocess.Popen(
                argv, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return url
            except redis.ConnectionError:
                if self.redis_proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.logs / 'redis.log'}") from None
                time.sleep(0.05)

    def spawn(self, name: str, args: list[str]) -> Any:
        """``anvil <args>`` from the bench venv, in its own process group, logging to logs/<name>.log."""
        from anvil.cli.processes import Child

        log = self.logs / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(self.python), "-m", "anvil.cli", *args],
                env=env, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def start_api(self) -> None:
        """`anvil api`, and an admin's token for the requests."""
        from anvil.cli.bootstrap import free_port
        from anvil.cli.processes import wait_http
        from anvil.domain.enums import Role
        from anvil.settings import get_settings
        from api.security import issue_token
        from db.session import new_session
        from db.users import create_user

        port = free_port()
        api = self.spawn("api", ["api", "--port", str(port)])
        self.api_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.api_url}/readyz", timeout=60, child=api)
        with new_session() as session, session.begin():
            user = create_user(session, username="bench", password=secrets.token_hex(16), role=Role.ADMIN)
            user_id, username, role = user.id, user.username, user.role
        self.token = issue_token(get_settings(), user_id=user_id, username=username, role=role)

    def start_workers(self, count: int, concurrency: int) -> list[Any]:
        """``count`` `anvil worker -c concurrency` processes with names of their own, once all are
        ready and the worker registry shows their slots live (what ``shards: "auto"`` counts)."""
        from anvil.cli.processes import wait_log

        tag = uuid.uuid4().hex[:6]
        started = [
            self.spawn(f"worker-{tag}-{i}", ["worker", "-c", str(concurrency), "-n", f"bench-{tag}-{i}@%h"])
            for i in range(count)
        ]
        for child in started:
            wait_log(child, "ready.", timeout=120)
        self.wait_slots(count * concurrency)
        return started

    def stop_workers(self, workers: list[Any]) -> None:
        """Warm shutdown (each marks itself stopped in the registry), then no live slot is left."""
        for child in workers:
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        for child in workers:
            child.stop(timeout=30)
            self.children.remove(child)
        self.wait_slots(0)

    def wait_slots(self, expected: int, timeout: float = 60) -> None:
        from db.session import new_session
        from db.sql import read_db_now
        from db.workers import live_slots

        deadline = time.monotonic() + timeout
        while True:
            with new_session() as session:
                slots = live_slots(session, "normal", now=read_db_now(session))
            if slots == expected:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker registry shows {slots} live slots, expected {expected}")
            time.sleep(0.2)

    def cleanup(self, *, keep_logs: bool) -> None:
        for child in reversed(self.children):
            try:
                child.stop(timeout=20)
            except Exception:
                child.kill()
        self.children.clear()
        if self.db_created:
            from db.session import _engines

            for engine in _engines.values():
                engine.dispose()
            self.admin_sql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            self.db_created = False
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            try:
                self.redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
                self.redis_proc.wait()
            self.redis_proc = None
        elif self.redis_url is not None:
            redis.Redis.from_url(self.redis_url).flushdb()
        if keep_logs and self.logs.exists():
            print(f"logs kept in {self.logs}", file=sys.stderr)
            shutil.rmtree(self.workspaces, ignore_errors=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
