"""A real Anvil stack per test: `anvil api`, `anvil worker`(s) and `anvil beat` as child processes.

Each stack has its own PostgreSQL database (cloned from the migrated template), its own Redis DB on
a private `redis-server` (so other test sessions on the machine can neither flush our queues nor
consume our messages), a temporary workspace root with a `demo` workspace, and an admin token.
Timings are shortened through the environment so recovery paths take seconds.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from anvil.cli.processes import Child, spawn, wait_http, wait_log

# Nothing follows these; FAILED, ERROR and TIMEOUT may still become RETRYING.
TERMINAL = {"PASSED", "CANCELLED", "SKIPPED", "ABORTED", "RETRYING"}
FINAL = TERMINAL | {"FAILED", "ERROR", "TIMEOUT"}
# Generous, bounded waits: other test sessions may be loading the machine.
START_TIMEOUT_S = 60.0
FINAL_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    # Remember each phase's report so the stack's teardown knows whether to print the logs.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A redis-server of this test session on a free port; None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=(folder / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server did not start; see {folder / 'redis.log'}") from None
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def e2e_redis(private_redis: str | None, request: pytest.FixtureRequest) -> Iterator[str]:
    """A flushed Redis DB for one stack: on the private server, else the shared fresh_redis."""
    if private_redis is None:
        yield request.getfixturevalue("fresh_redis")
        return
    url = f"{private_redis}/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@dataclass
class Stack:
    """A running Anvil installation and what a test needs to drive and inspect it."""

    root: Path
    env: dict[str, str]
    api_url: str
    database_url: str
    redis_url: str
    client: httpx.Client
    engine: Engine
    children: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)
    _worker_seq: int = 0

    # --- processes -------------------------------------------------------------------------------

    def start_worker(self, *, concurrency: int = 2, queues: str | None = None) -> Child:
        """Start one `anvil worker` and wait until Celery reports it ready."""
        child = self.spawn_worker(concurrency=concurrency, queues=queues)
        wait_log(child, "ready.", timeout=START_TIMEOUT_S)
        return child

    def spawn_worker(self, *, concurrency: int = 2, queues: str | None = None) -> Child:
        self._worker_seq += 1
        name = f"worker{self._worker_seq}"
        args = ["worker", "-c", str(concurrency), "-n", f"e2e{self._worker_seq}@%h"]
        if queues:
            args += ["-Q", queues]
        child = spawn(name, args, env=self.env, log=self.root / "logs" / f"{name}.log", cwd=self.root)
        self.children.append(child)
        self.workers.append(child)
        return child

    def stop_worker(self, child: Child) -> None:
        child.stop(timeout=20)

    def kill_worker(self, child: Child) -> None:
        child.kill()

    # --- API -------------------------------------------------------------------------------------

    def create_case(
        self,
        steps: list[dict[str, Any]],
        *,
        workspace: str = "demo",
        timeout_s: int = 60,
        name: str | None = None,
        spec_options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name or f"e2e-{uuid.uuid4().hex[:8]}",
            "kind": "generic",
            "spec": {"workspace": workspace, "steps": steps, **(spec_options or {})},
            "timeout_s": timeout_s,
        }
        response = self.client.post("/api/v1/test-cases", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def submit(self, case_id: str, *, priority: str = "NORMAL") -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/executions/case", json={"test_case_id": case_id, "priority": priority}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, execution_id: str, *, include: str | None = None) -> dict[str, Any]:
        params = {"include": include} if include else None
        response = self.client.get(f"/api/v1/executions/{execution_id}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_status(
        self, execution_id: str, statuses: set[str], *, timeout: float = FINAL_TIMEOUT_S
    ) -> dict[str, Any]:
        """Poll the execution until its status is one of ``statuses``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.get(execution_id)
            if execution["status"] in statuses:
                return execution
            if execution["status"] in TERMINAL:
                raise AssertionError(
                    f"execution {execution_id} ended {execution['status']} ({execution['error']}), "
                    f"wanted one of {sorted(statuses)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"execution {execution_id} still {execution['status']} after {timeout}s, "
                    f"wanted one of {sorted(statuses)}"
                )
            time.sleep(0.1)

    def wait_final(self, execution_id: str, *, timeout: float = FINAL_TIMEOUT_S) -> dict[str, Any]:
        """Wait for a final status; returns the execution with its steps and transitions."""
        self.wait_status(execution_id, FINAL, timeout=timeout)
        return self.get(execution_id, include="steps,transitions")

    def run_case(self, steps: list[dict[str, Any]], **case_options: Any) -> dict[str, Any]:
        """Create a case, submit it, and return the finished execution (with steps, transitions)."""
        case = self.create_case(steps, **case_options)
        return self.wait_final(self.submit(case["id"])["id"])

    # --- direct access to the stores -------------------------------------------------------------

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(statement), params))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def publish(self, execution_id: str, priority: str) -> None:
        """Publish "execution X is ready" on this stack's broker, exactly as the API does."""
        from anvil.domain.enums import Priority
        from anvil.settings import Settings
        from workers.celery_app import RUN_TASK, make_celery

        app = make_celery(Settings(redis_url=self.redis_url, database_url=self.database_url))
        queue = Priority(priority).queue
        try:
            app.send_task(RUN_TASK, args=[execution_id], queue=queue, routing_key=queue)
        finally:
            app.close()

    # --- teardown --------------------------------------------------------------------------------

    def stop_all(self) -> None:
        # SIGTERM everything at once (Celery: warm shutdown), wait, then sweep every process group.
        for child in self.children:
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            child.kill()
        self.client.close()
        self.engine.dispose()

    def log_tails(self, lines: int = 80) -> str:
        parts = []
        for path in sorted((self.root / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path.name} (last {len(tail)} lines) -----\n" + "\n".join(tail))
        return "\n".join(parts)


def _create_admin(database_url: str) -> str:
    """An admin in the stack's database (a dedicated engine, not this process's default one)."""
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.session import make_engine
    from db.users import create_user

    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            user = create_user(session, username="e2e-admin", password="e2e-pw", role=Role.ADMIN)
            user_id, username, role = user.id, user.username, user.role
    finally:
        engine.dispose()
    # The children inherit ANVIL_SECRET_KEY from this process, so they accept this token.
    return issue_token(get_settings(), user_id=user_id, username=username, role=role)


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    fresh_database: str, e2e_redis: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StackFactory]:
    """Factory: ``make_stack(workers=1, concurrency=2, queues=None, beat=True, env=None)``: one stack."""
    from db.session import make_engine

    stacks: list[Stack] = []

    def factory(
        *,
        workers: int = 1,
        concurrency: int = 2,
        queues: str | None = None,
        beat: bool = True,
        env: dict[str, str] | None = None,
    ) -> Stack:
        assert not stacks, "one stack per test: they share the database and the broker"
        (tmp_path / "workspaces" / "demo").mkdir(parents=True)
        port = free_port()
        env = {
            "ANVIL_DATABASE_URL": fresh_database,
            "ANVIL_REDIS_URL": e2e_redis,
            "ANVIL_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            "ANVIL_DATA_DIR": str(tmp_path / ".anvil"),
            "ANVIL_API_HOST": "127.0.0.1",
            "ANVIL_API_PORT": str(port),
            "ANVIL_REPUBLISH_AFTER_S": "2",
            "ANVIL_LEASE_TTL_S": "6",
            "ANVIL_HEARTBEAT_S": "1",
            "ANVIL_LOG_LEVEL": "INFO",
            **(env or {}),  # a test's own settings, e.g. shorter timings
        }
        token = _create_admin(fresh_database)
        api_url = f"http://127.0.0.1:{port}"
        stack = Stack(
            root=tmp_path,
            env=env,
            api_url=api_url,
            database_url=fresh_database,
            redis_url=e2e_redis,
            client=httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30),
            engine=make_engine(fresh_database),
        )
        stacks.append(stack)
        # Start everything at once (imports dominate start-up), then wait for each to be ready.
        api = spawn("api", ["api"], env=env, log=tmp_path / "logs" / "api.log", cwd=tmp_path)
        stack.children.append(api)
        if beat:
            beat_child = spawn("beat", ["beat"], env=env, log=tmp_path / "logs" / "beat.log", cwd=tmp_path)
            stack.children.append(beat_child)
        started = [stack.spawn_worker(concurrency=concurrency, queues=queues) for _ in range(workers)]
        wait_http(f"{api_url}/readyz", timeout=START_TIMEOUT_S, child=api)
        for child in started:
            wait_log(child, "ready.", timeout=START_TIMEOUT_S)
        if beat:
            wait_log(beat_child, "beat: Starting", timeout=START_TIMEOUT_S)
        return stack

    yield factory

    for stack in stacks:
        stack.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(f"\n===== logs of the Anvil stack in {stack.root} =====\n{stack.log_tails()}")


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    """The default stack: API, beat and one worker of concurrency 2."""
    return make_stack()


class AttemptCounter:
    """Remembers runs across attempts for tests that must fail once, then pass: nothing a
    sandboxed test writes outlives it, so it asks this loopback counter which run it is."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.counts: Counter[str] = Counter()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with conn:
                key = conn.recv(64).decode()
                self.counts[key] += 1
                conn.sendall(str(self.counts[key]).encode())

    def fail_first_step(self, key: str, name: str = "flaky") -> dict[str, Any]:
        """A step that prints "first" and fails on its first run, prints "second" and passes after."""
        port = self.server.getsockname()[1]
        script = (
            f"import socket; c = socket.create_connection(('127.0.0.1', {port})); c.sendall(b'{key}'); "
            "n = int(c.recv(9)); print('first' if n == 1 else 'second'); raise SystemExit(n == 1)"
        )
        return {"name": name, "run": ["python3", "-c", script]}


@pytest.fixture
def attempts() -> Iterator[AttemptCounter]:
    counter = AttemptCounter()
    yield counter
    counter.server.close()


# ---- the browser tests' Chromium (tests/e2e/browser.py) ------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for a browser test module (tests/e2e/browser.py: which one, its flags)."""
    from tests.e2e.browser import ARGS, chromium_path, playwright_api

    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=chromium_path(),
            args=ARGS,
            headless=True,
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from tests.e2e.browser import WAIT_MS

    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()
