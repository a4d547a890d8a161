"""`anvil dev`: the standalone supervisor on SQLite, run as a user would, in a fresh directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from anvil.cli.processes import anvil_argv
from anvil.migrate import ROOT
from anvil.settings import DEV_SECRET
from tests.e2e.conftest import free_port

START_TIMEOUT_S = 90.0


def dev_env() -> dict[str, str]:
    """This environment without the test session's ANVIL_* settings (those point at PostgreSQL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def project_dir(tmp_path: Path) -> Path:
    """A directory laid out like a checkout: the sample case and its workspace under examples/."""
    (tmp_path / "examples" / "workspaces").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "hello-case.json", tmp_path / "examples" / "hello-case.json")
    shutil.copytree(ROOT / "examples" / "workspaces" / "demo", tmp_path / "examples" / "workspaces" / "demo")
    return tmp_path


def descendants(pid: int) -> dict[int, tuple[str, str]]:
    """Every live process below ``pid``: pid -> (start time, command line)."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        info[int(entry.name)] = (fields[19], cmdline)
    found: dict[int, tuple[str, str]] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = info[child]
                frontier.append(child)
    return found


def still_running(processes: dict[int, tuple[str, str]]) -> list[str]:
    """Those of ``processes`` that still exist (same pid and start time, not a zombie)."""
    alive = []
    for pid, (started, cmdline) in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[19] == started:
            alive.append(f"{pid} {cmdline}")
    return alive


class Dev:
    """One `anvil dev` process with its output in a file."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.port, self.flower_port = free_port(), free_port()
        self.log = cwd / "dev.log"
        argv = anvil_argv("dev", "--port", str(self.port), "--flower-port", str(self.flower_port), *args)
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**dev_env(), **(env or {})},
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.api_url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> str:
        """Wait until the API is ready and the token is written; returns the token."""
        deadline = time.monotonic() + START_TIMEOUT_S
        token_file = self.cwd / ".anvil" / "token"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"anvil dev exited with {self.proc.returncode}:\n{self.output()}"
            if "Anvil is up" in self.output() and token_file.exists():
                return token_file.read_text().strip()
            time.sleep(0.2)
        raise AssertionError(f"anvil dev not up after {START_TIMEOUT_S}s:\n{self.output()}")

    def stop(self) -> None:
        """Teardown safety net: whatever the test did, leave nothing running."""
        leftovers = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in leftovers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def dev_runs(tmp_path: Path) -> Iterator[list[Dev]]:
    runs: list[Dev] = []
    yield runs
    for run in runs:
        run.stop()
        # Shown by pytest only when the test failed.
        print(f"===== anvil dev output in {run.cwd} =====\n{run.output()[-30000:]}")


def test_exit_after_demo_runs_the_sample_case_to_passed_on_sqlite(
    tmp_path: Path, dev_runs: list[Dev]
) -> None:
    cwd = project_dir(tmp_path)
    dev = Dev(cwd, "--exit-after-demo", "--broker", "filesystem")
    dev_runs.append(dev)

    try:
        code = dev.proc.wait(timeout=START_TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"anvil dev --exit-after-demo still running:\n{dev.output()}")

    out = dev.output()
    assert code == 0, out
    assert f"sqlite:///{cwd / '.anvil' / 'anvil.db'}" in out
    assert "filesystem://" in out
    assert "admin user created: username admin, password" in out
    assert "demo   | PASSED" in out and "the sample case PASSED" in out
    # Every role ran and spoke through its prefix.
    for role in ("api", "worker", "beat", "flower"):
        assert f"\n{role:<6} | " in out, role
    assert (cwd / ".anvil" / "anvil.db").is_file()
    assert (cwd / ".anvil" / "token").read_text().strip()
    # Flower listens on loopback only, and says so.
    assert f"Flower http://127.0.0.1:{dev.flower_port}  (listens on 127.0.0.1 only" in out
    # The data directory's own key, private, signed the token: not the development key.
    key_file = cwd / ".anvil" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert key != DEV_SECRET
    claims = jwt.decode((cwd / ".anvil" / "token").read_text().strip(), key, algorithms=["HS256"])
    assert claims["sub"]


def test_dev_with_own_redis_runs_a_case_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, dev_runs: list[Dev]
) -> None:
    assert shutil.which("redis-server"), "this test needs redis-server on PATH"
    cwd = project_dir(tmp_path)
    dev = Dev(cwd)
    dev_runs.append(dev)
    token = dev.wait_up()
    assert "(private redis-server)" in dev.output()
    # The web interface's address comes first, and it answers with the sign-in page.
    assert f"Anvil is up: open {dev.api_url}/ui " in dev.output()
    login = httpx.get(f"{dev.api_url}/ui", follow_redirects=True, timeout=30)
    assert login.status_code == 200 and "Sign in to Anvil" in login.text, login.text

    with httpx.Client(base_url=dev.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        cases = api.get("/api/v1/test-cases").json()["items"]
        hello = next(c for c in cases if c["name"] == "hello")
        submitted = [
            api.post("/api/v1/executions/case", json={"test_case_id": hello["id"]}).json() for _ in range(4)
        ]
        deadline = time.monotonic() + 60
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline and set(statuses.values()) != {"PASSED"}:
            statuses = {e["id"]: api.get(f"/api/v1/executions/{e['id']}").json()["status"] for e in submitted}
            time.sleep(0.2)
    assert set(statuses.values()) == {"PASSED"}, statuses

    children = descendants(dev.proc.pid)
    commands = " ".join(cmd for _, cmd in children.values())
    for role in ("redis-server", " api ", " worker", " beat", " flower "):
        assert role in commands, f"{role!r} not among the supervisor's children: {commands}"

    started = time.monotonic()
    dev.proc.send_signal(signal.SIGINT)
    try:
        code = dev.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"anvil dev did not stop within 20 s of Ctrl-C:\n{dev.output()}")
    assert code == 0, dev.output()
    assert time.monotonic() - started < 20
    assert still_running(children) == []


def test_dev_stops_everything_when_a_child_dies(tmp_path: Path, dev_runs: list[Dev]) -> None:
    cwd = project_dir(tmp_path)
    dev = Dev(cwd, "--no-flower", "--broker", "filesystem")
    dev_runs.append(dev)
    dev.wait_up()
    children = descendants(dev.proc.pid)
    beat = next(pid for pid, (_, cmd) in children.items() if cmd.rstrip().endswith(" beat"))

    os.kill(beat, signal.SIGKILL)

    try:
        code = dev.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"anvil dev kept running after its beat died:\n{dev.output()}")
    assert code != 0
    assert "beat exited unexpectedly" in dev.output()
    assert still_running(children) == []


def test_flower_under_dev_turns_task_events_on_and_shows_the_worker_and_its_tasks(
    tmp_path: Path, dev_runs: list[Dev]
) -> None:
    assert shutil.which("redis-server"), "this test needs redis-server on PATH"
    cwd = project_dir(tmp_path)
    # `anvil dev`'s Flower has no login; its HTTP API then answers only when told to.
    dev = Dev(cwd, env={"FLOWER_UNAUTHENTICATED_API": "true"})
    dev_runs.append(dev)
    token = dev.wait_up()

    # The worker starts without task events; Flower's enable_events broadcast (5 s after it
    # starts, then every 5 s) turns them on, and the worker says so.
    deadline = time.monotonic() + 60
    while "Events of group {task} enabled by remote" not in dev.output():
        assert time.monotonic() < deadline, f"Flower never enabled task events:\n{dev.output()}"
        assert dev.proc.poll() is None, f"anvil dev exited with {dev.proc.returncode}:\n{dev.output()}"
        time.sleep(0.2)

    with httpx.Client(base_url=dev.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        hello = next(c for c in api.get("/api/v1/test-cases").json()["items"] if c["name"] == "hello")
        execution_id = api.post("/api/v1/executions/case", json={"test_case_id": hello["id"]}).json()["id"]
        deadline = time.monotonic() + 60
        while (status := api.get(f"/api/v1/executions/{execution_id}").json()["status"]) != "PASSED":
            assert time.monotonic() < deadline, f"execution {execution_id} still {status}"
            time.sleep(0.2)

    with httpx.Client(base_url=f"http://127.0.0.1:{dev.flower_port}", timeout=30) as flower:
        # The task, from the worker's task events: SUCCESS, on that worker, for that execution.
        deadline = time.monotonic() + 30
        while True:
            tasks = flower.get("/api/tasks", params={"taskname": "anvil.run_execution"}).json()
            ours = [t for t in tasks.values() if execution_id in str(t.get("args"))]
            if ours and ours[0]["state"] == "SUCCESS":
                break
            assert time.monotonic() < deadline, f"Flower does not show {execution_id} succeeded: {tasks}"
            time.sleep(0.2)
        worker = ours[0]["worker"]
        assert worker.startswith("celery@"), ours
        # The worker, from its heartbeats (alive) and from a remote-control inspect.
        assert flower.get("/api/workers", params={"status": "1"}).json().get(worker) is True
        inspected = flower.get("/api/workers", params={"refresh": "1"}).json()
        assert worker in inspected, inspected
