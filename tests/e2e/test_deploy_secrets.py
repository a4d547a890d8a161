"""Deployment secrets with real processes: no development key off this machine, secrets from files,
and a running API or worker whose secrets other processes of its uid cannot read."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil.cli.processes import Child, anvil_argv, wait_http, wait_log
from anvil.settings import REMOVED_MARKER, SECRET_SETTINGS
from tests.e2e.conftest import START_TIMEOUT_S, Stack, StackFactory, free_port

KEY = "a-real-signing-key-for-this-test-0123456789"


def plain(argv: list[str]) -> list[str]:
    """``argv`` as an ordinary process of this uid: as root, without any capability (root's
    capabilities would let it read any process; an ordinary user has none)."""
    if os.geteuid() == 0:
        return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", *argv]
    return argv


def env_without_secrets(**extra: str) -> dict[str, str]:
    secret = {f"ANVIL_{n.upper()}" for n in SECRET_SETTINGS} | {REMOVED_MARKER}
    env = {k: v for k, v in os.environ.items() if k not in secret}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop(timeout=20)


def start(
    children: list[Child], name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path
) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )
    child = Child(name, proc, log)
    children.append(child)
    return child


def read_environ(pid: int) -> subprocess.CompletedProcess[bytes]:
    """Read /proc/<pid>/environ as a process of the same uid would."""
    return subprocess.run(plain(["cat", f"/proc/{pid}/environ"]), capture_output=True, timeout=10)


def pool_processes(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_the_api_refuses_the_development_key_on_all_interfaces_and_starts_with_a_real_one(
    fresh_database: str, tmp_path: Path, children: list[Child]
) -> None:
    port = free_port()
    argv = anvil_argv("api", "--host", "0.0.0.0", "--port", str(port))
    env = env_without_secrets(
        ANVIL_DATABASE_URL=fresh_database, ANVIL_REDIS_URL=os.environ["ANVIL_REDIS_URL"]
    )

    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert refused.returncode == 2, refused.stderr
    assert "anvil api: refusing to start with the development secret key" in refused.stderr
    assert "the API would listen on 0.0.0.0" in refused.stderr
    assert "Set ANVIL_SECRET_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr

    # With a real key, from a file, the same command serves; and its environment (which still has
    # the database URL) is closed to other processes of its uid.
    key_file = tmp_path / "secret_key"
    key_file.write_text(KEY + "\n")
    api = start(
        children,
        "api",
        plain(argv),
        {**env, "ANVIL_SECRET_KEY_FILE": str(key_file)},
        tmp_path / "logs" / "api.log",
        tmp_path,
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=START_TIMEOUT_S, child=api)
    seen = read_environ(api.pid)
    assert seen.returncode != 0 and b"Permission denied" in seen.stderr, seen
    assert fresh_database.encode() not in seen.stdout


@pytest.mark.parametrize(
    ("role", "setting", "remote", "says"),
    [
        ("worker", "ANVIL_DATABASE_URL", "postgresql://a:s3cr3t@db.example.invalid/a", "the database"),
        ("beat", "ANVIL_REDIS_URL", "redis://:s3cr3t@broker.example.invalid:6379/0", "the broker"),
    ],
)
def test_worker_and_beat_refuse_the_development_key_with_services_on_other_hosts(
    role: str, setting: str, remote: str, says: str, tmp_path: Path
) -> None:
    env = env_without_secrets(**{setting: remote})

    argv = anvil_argv(role)
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert refused.returncode == 2, refused.stderr
    assert f"anvil {role}: refusing to start with the development secret key" in refused.stderr
    assert f"{says} is on " in refused.stderr and "example.invalid" in refused.stderr
    assert "s3cr3t" not in refused.stderr  # the URL's password is not repeated


def test_a_worker_given_both_a_variable_and_its_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(os.environ["ANVIL_DATABASE_URL"])
    env = {**os.environ, "ANVIL_DATABASE_URL_FILE": str(tmp_path / "url")}

    refused = subprocess.run(anvil_argv("worker"), env=env, capture_output=True, text=True, timeout=60)

    assert refused.returncode == 2
    assert "both ANVIL_DATABASE_URL and ANVIL_DATABASE_URL_FILE are set" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_running_worker_keeps_its_secrets_from_processes_of_its_uid(
    make_stack: StackFactory, tmp_path: Path, children: list[Child]
) -> None:
    stack: Stack = make_stack(workers=0)
    url_file = tmp_path / "database_url"
    url_file.write_text(stack.database_url + "\n")
    env = env_without_secrets(**{k: v for k, v in stack.env.items() if k != "ANVIL_DATABASE_URL"})
    env.update(
        ANVIL_SECRET_KEY=os.environ["ANVIL_SECRET_KEY"],  # the stack's key, as an environment variable
        ANVIL_DATABASE_URL_FILE=str(url_file),
        # The worker runs as an ordinary process here (no capabilities), which cannot build the
        # sandbox; this test is about the worker's own process, the sandbox has tests of its own.
        ANVIL_SANDBOX="off",
    )
    worker = start(
        children,
        "worker",
        plain(anvil_argv("worker", "-c", "2", "-n", "secrets@%h")),
        env,
        tmp_path / "logs" / "worker-secrets.log",
        tmp_path,
    )
    wait_log(worker, "ready.", timeout=START_TIMEOUT_S)
    deadline = time.monotonic() + 10
    while len(pool := pool_processes(worker.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pool) >= 2, pool

    # What the test did, from inside a test: read its worker's initial environment.
    done = stack.run_case(
        [{"name": "peek", "run": ["sh", "-c", 'cat "/proc/$PPID/environ"; echo "cat exited $?"']}]
    )

    # The worker works on the secrets it read (the case ran: database from the file, broker and
    # key from variables), yet the test saw none of them.
    assert done["status"] == "PASSED", done
    output = done["steps"][0]["output"]
    assert "Permission denied" in output and "cat exited 1" in output, output
    assert os.environ["ANVIL_SECRET_KEY"] not in output and "ANVIL_REDIS_URL" not in output
    # Nor can any other process of the uid, for the main process or its pool processes.
    for pid in [worker.pid, *pool]:
        seen = read_environ(pid)
        assert seen.returncode != 0 and b"Permission denied" in seen.stderr, (pid, seen)
        assert os.environ["ANVIL_SECRET_KEY"].encode() not in seen.stdout

    # The same reader does read an ordinary process of the uid: the refusal is the worker's doing.
    ordinary = subprocess.Popen(plain(["sleep", "30"]), env={"MARKER": KEY})
    try:
        time.sleep(0.2)
        seen = read_environ(ordinary.pid)
        assert seen.returncode == 0 and f"MARKER={KEY}".encode() in seen.stdout, seen
    finally:
        ordinary.kill()
        ordinary.wait()
