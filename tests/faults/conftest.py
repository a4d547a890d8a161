"""Fault-test fixtures: a private PostgreSQL cluster and Redis server (started once per session, stopped
and restarted by the tests that need it), and Anvil stacks spawned against them.

Each stack gets a fresh database cloned from a migrated template on the private cluster (plus the
detector's ``collisions`` and ``detector_runs`` tables), the flushed private Redis, a workspace holding
the overlap detector, and short timings (lease 4 s, heartbeat 1 s, re-publish after 2 s) unless a
test asks for the defaults. Every process a stack started, and every test process carrying the stack's
marker, is killed at teardown, pass or fail; logs are printed when the test failed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from anvil.cli.processes import Child, spawn, wait_http, wait_log
from tests.e2e.conftest import START_TIMEOUT_S, Stack
from tests.faults.ledger import REPORTS, Ledger
from tests.faults.services import PgCluster, RedisServer, free_port, postgres_bin

TEMPLATE = "anvil_fault_template"
DETECTOR = Path(__file__).with_name("detector.py")
SHORT_TIMINGS = {
    "ANVIL_LEASE_TTL_S": "4",
    "ANVIL_HEARTBEAT_S": "1",
    "ANVIL_REPUBLISH_AFTER_S": "2",
    "ANVIL_TIMEOUT_GRACE_S": "2",
    "ANVIL_CANCEL_POLL_S": "0.5",
}
DETECTOR_TABLES = """
CREATE TABLE collisions (
    id bigserial PRIMARY KEY, execution_id text NOT NULL, attempt int, pid int, at timestamptz DEFAULT now()
);
CREATE TABLE detector_runs (
    id bigserial PRIMARY KEY, execution_id text NOT NULL, attempt int, pid int, got_lock boolean,
    at timestamptz DEFAULT now()
);
"""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    # The figures travel with the report: under xdist the test ran in a worker process, and only
    # reports reach the process that prints the summary.
    global _reported
    report.user_properties += [("fault_report", entry) for entry in REPORTS[_reported:]]
    _reported = len(REPORTS)
    return report


_reported = 0


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this session, with a migrated template database."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        cluster.admin(f'CREATE DATABASE "{TEMPLATE}"')
        from anvil.migrate import upgrade

        upgrade(cluster.url(TEMPLATE, driver="postgresql+psycopg"))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("fault-redis"))
    server.start()
    yield server
    server.kill()


def pool_children(pid: int) -> list[int]:
    """The Celery pool processes of a worker: processes whose parent is the worker's main process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def processes_with(marker: bytes) -> list[int]:
    """Pids whose environment contains ``marker`` (every test process of a stack carries one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class FaultStack(Stack):
    """An Anvil stack on the private PostgreSQL and Redis, with a ledger and the overlap detector."""

    pg: PgCluster | None = None
    redis_server: RedisServer | None = None
    detector_url: str = ""
    marker: str = ""
    ledger: Ledger = field(default_factory=Ledger)
    beats: list[Child] = field(default_factory=list)
    _beat_seq: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def detector_case(
        self, seconds: float, *, timeout_s: int = 60, name: str | None = None
    ) -> dict[str, Any]:
        """A case whose one step runs the overlap detector for ``seconds``."""
        return self.create_case(
            [self.detector_step(seconds)], workspace="fault", timeout_s=timeout_s, name=name
        )

    def detector_step(self, seconds: float) -> dict[str, Any]:
        return {
            "name": "detector",
            "run": [sys.executable, "detector.py", str(seconds)],
            "env": self.step_env(),
        }

    def step_env(self) -> dict[str, str]:
        return {"FAULT_DETECTOR_URL": self.detector_url, "FAULT_RUN": self.marker}

    def submit_many(self, case_id: str, count: int, *, threads: int = 4) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: self.ledger.submit(self.client, case_id), range(count)))

    def start_beat(self, *, wrapper: Sequence[str] = ()) -> Child:
        """Start a beat; ``wrapper`` runs it under another command (e.g. faketime)."""
        name = f"beat{next(self._beat_seq)}"
        log = self.root / "logs" / f"{name}.log"
        child = spawn(name, ["beat"], env=self.env, log=log, cwd=self.root, wrapper=wrapper)
        self.children.append(child)
        self.beats.append(child)
        return child

    def stop_workers(self) -> None:
        """Warm shutdown of every live worker, side by side; SIGKILL the ones that do not exit."""
        live = [w for w in self.workers if w.alive()]
        for worker in live:
            worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for worker in live:
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()

    def check(self, *, timeout: float = 120.0) -> dict[str, Any]:
        return self.ledger.check(self.engine, timeout=timeout)

    def stop_all(self) -> None:
        # A fault stack's database is dropped afterwards: no need for graceful shutdowns, kill the groups.
        for child in self.children:
            child.kill()
        self.client.close()
        self.engine.dispose()

    def kill_test_processes(self) -> None:
        for pid in processes_with(f"FAULT_RUN={self.marker}".encode()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tails(self, lines: int = 60) -> str:
        tails = super().log_tails(lines)
        if self.pg is not None:
            tails += "\n" + self.pg.log_tail(20)
        return tails


FaultStackFactory = Callable[..., FaultStack]
_db_seq = itertools.count(1)


def _create_admin(database_url: str) -> str:
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.session import make_engine
    from db.users import create_user

    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            user = create_user(session, username="fault-admin", password="fault-pw", role=Role.ADMIN)
            user_id, username, role = user.id, user.username, user.role
    finally:
        engine.dispose()
    # The children inherit ANVIL_SECRET_KEY from this process, so they accept this token.
    return issue_token(get_settings(), user_id=user_id, username=username, role=role)


@pytest.fixture
def make_fault_stack(
    pg_cluster: PgCluster, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[FaultStackFactory]:
    """Factory: ``make_fault_stack(workers=2, concurrency=2, beats=1, timings="short"|"default")``."""
    from db.session import make_engine

    stacks: list[FaultStack] = []
    # Not pytest's tmp_path: test workspaces must stay short and readable by every process.
    root = Path(tempfile.mkdtemp(prefix="anvil-fault-"))
    dbname = f"fault_{os.getpid()}_{next(_db_seq)}"

    def factory(
        *, workers: int = 2, concurrency: int = 2, beats: int = 1, timings: str = "short"
    ) -> FaultStack:
        assert not stacks, "one stack per test"
        # A test before this one may have failed while a service was down.
        if not pg_cluster.running():
            pg_cluster.start()
        if redis_server.proc is None or redis_server.proc.poll() is not None:
            redis_server.start()
        redis_server.flush()
        pg_cluster.admin(f'CREATE DATABASE "{dbname}" TEMPLATE "{TEMPLATE}"')
        database_url = pg_cluster.url(dbname, driver="postgresql+psycopg")
        engine = make_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text(DETECTOR_TABLES))
        (root / "workspaces" / "fault").mkdir(parents=True)
        shutil.copy(DETECTOR, root / "workspaces" / "fault" / "detector.py")
        port = free_port()
        env = {
            "ANVIL_DATABASE_URL": database_url,
            "ANVIL_REDIS_URL": redis_server.url,
            "ANVIL_WORKSPACE_ROOT": str(root / "workspaces"),
            "ANVIL_DATA_DIR": str(root / ".anvil"),
            "ANVIL_API_HOST": "127.0.0.1",
            "ANVIL_API_PORT": str(port),
            "ANVIL_LOG_LEVEL": "INFO",
            **(SHORT_TIMINGS if timings == "short" else {}),
        }
        api_url = f"http://127.0.0.1:{port}"
        token = _create_admin(database_url)
        stack = FaultStack(
            root=root,
            env=env,
            api_url=api_url,
            database_url=database_url,
            redis_url=redis_server.url,
            client=httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30),
            engine=engine,
            pg=pg_cluster,
            redis_server=redis_server,
            detector_url=pg_cluster.url(dbname),
            marker=uuid.uuid4().hex,
        )
        stacks.append(stack)
        api = spawn("api", ["api"], env=env, log=root / "logs" / "api.log", cwd=root)
        stack.children.append(api)
        started_beats = [stack.start_beat() for _ in range(beats)]
        started = [stack.spawn_worker(concurrency=concurrency) for _ in range(workers)]
        wait_http(f"{api_url}/readyz", timeout=START_TIMEOUT_S, child=api)
        for child in started:
            wait_log(child, "ready.", timeout=START_TIMEOUT_S)
        for child in started_beats:
            wait_log(child, "beat: Starting", timeout=START_TIMEOUT_S)
        return stack

    yield factory

    for stack in stacks:
        stack.stop_all()
        stack.kill_test_processes()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(f"\n===== logs of the fault stack in {stack.root} =====\n{stack.log_tails()}")
    if not pg_cluster.running():
        pg_cluster.start()
    pg_cluster.admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    shutil.rmtree(root, ignore_errors=True)
