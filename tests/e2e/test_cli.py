"""The `anvil` API-client commands against a real stack, run as a user runs them (a subprocess).

`submit case --wait` follows the execution over its live event stream; one test cuts that stream
and makes the API answer 503 for a while, and the command must still show every step exactly once.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from junitparser import JUnitXml

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import AttemptCounter, Stack, free_port


def anvil(
    *args: str, api_url: str, token: str | None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANVIL_API_URL", "ANVIL_TOKEN")}
    env["ANVIL_API_URL"] = api_url
    if token is not None:
        env["ANVIL_TOKEN"] = token
    return subprocess.run(anvil_argv(*args), env=env, capture_output=True, text=True, timeout=timeout)


def token_of(stack: Stack) -> str:
    return str(stack.client.headers["Authorization"]).removeprefix("Bearer ")


def case_file(tmp_path: Path, steps: list[dict], name: str | None = None) -> Path:
    path = tmp_path / f"case-{uuid.uuid4().hex[:6]}.json"
    definition = {
        "name": name or f"cli-{uuid.uuid4().hex[:8]}",
        "kind": "generic",
        "timeout_s": 60,
        "spec": {"workspace": "demo", "steps": steps},
    }
    path.write_text(json.dumps(definition))
    return path


def test_create_submit_wait_and_status_of_a_passing_case(stack: Stack, tmp_path: Path) -> None:
    token = token_of(stack)
    steps = [
        {"name": "greet", "run": ["echo", "hi there"], "expect_output": "hi"},
        {"name": "ok", "run": ["true"]},
    ]

    created = anvil("cases", "create", "--file", str(case_file(tmp_path, steps, "cli-pass")), **_at(stack))
    assert created.returncode == 0, created.stderr
    case_id, name = created.stdout.split()
    assert name == "cli-pass"
    assert stack.client.get(f"/api/v1/test-cases/{case_id}").json()["name"] == "cli-pass"

    listed = anvil("cases", "list", api_url=stack.api_url, token=token)
    assert listed.returncode == 0, listed.stderr
    assert case_id in listed.stdout and "cli-pass" in listed.stdout

    waited = anvil(
        "submit", "case", case_id, "--wait", "--priority", "high", "--run-id", "build-7", **_at(stack)
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr
    lines = waited.stdout.splitlines()
    execution_id = lines[0].split()[-1]
    assert "step 1 passed" in waited.stdout and "greet" in waited.stdout
    assert "step 2 passed" in waited.stdout
    assert lines[-1].startswith("PASSED")
    recorded = stack.get(execution_id)
    assert (recorded["status"], recorded["priority"], recorded["run_id"]) == ("PASSED", "HIGH", "build-7")

    shown = anvil("status", execution_id, **_at(stack))
    assert shown.returncode == 0, shown.stderr
    assert "PASSED" in shown.stdout and "cli-pass" in shown.stdout and "greet" in shown.stdout
    raw = anvil("status", execution_id, "--json", **_at(stack))
    assert json.loads(raw.stdout)["status"] == "PASSED"

    # Without --wait: just the id, and an idempotency key returns the same execution again.
    first = anvil("submit", "case", case_id, "--idempotency-key", "k-1", **_at(stack))
    again = anvil("submit", "case", "cli-pass", "--idempotency-key", "k-1", **_at(stack))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert uuid.UUID(first.stdout.strip()) == uuid.UUID(again.stdout.strip())
    assert stack.wait_final(first.stdout.strip())["status"] == "PASSED"


def test_failing_case_exits_1_and_api_errors_exit_2(stack: Stack, tmp_path: Path) -> None:
    steps = [
        {"name": "fine", "run": ["true"]},
        {"name": "breaks", "run": ["sh", "-c", "echo boom; exit 3"]},
        {"name": "never", "run": ["true"]},
    ]
    created = anvil("cases", "create", "-q", "--file", str(case_file(tmp_path, steps)), **_at(stack))
    case_id = created.stdout.strip()

    waited = anvil("submit", "case", case_id, "--wait", **_at(stack))
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "step 2 failed" in waited.stdout and "exit code 3, expected 0" in waited.stdout
    assert "boom" in waited.stdout  # the failing step's output is shown
    assert "step 3 skipped" in waited.stdout
    assert waited.stdout.splitlines()[-2].startswith("FAILED")
    execution_id = waited.stdout.splitlines()[0].split()[-1]
    assert "FAILED" in anvil("status", execution_id, **_at(stack)).stdout

    # --junit: the report is written also when the case did not pass (and implies --wait).
    report = tmp_path / "reports" / "case.xml"
    report.parent.mkdir()
    again = anvil("submit", "case", case_id, "--junit", str(report), **_at(stack))
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"JUnit report {report} (3 tests, 1 failures, 0 errors, 1 skipped)" in again.stdout
    [suite] = JUnitXml.fromfile(str(report))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (3, 1, 0, 1)
    nowhere = anvil("submit", "case", case_id, "--junit", str(tmp_path / "absent" / "x.xml"), **_at(stack))
    assert nowhere.returncode == 2 and "does not exist" in unboxed(nowhere.stderr)

    bad_token = anvil("cases", "list", api_url=stack.api_url, token="not-a-token")
    assert bad_token.returncode == 2
    assert "the access token is not valid" in bad_token.stderr

    bad_spec = case_file(tmp_path, [{"run": []}])
    refused = anvil("cases", "create", "--file", str(bad_spec), **_at(stack))
    assert refused.returncode == 2
    assert "body.spec.steps.0.run" in refused.stderr

    unknown = anvil("submit", "case", str(uuid.uuid4()), "--wait", **_at(stack))
    assert unknown.returncode == 2
    assert "does not exist" in unknown.stderr

    missing = anvil("status", str(uuid.uuid4()), **_at(stack))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_unreachable_api_exits_2_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = anvil("submit", "case", str(uuid.uuid4()), "--wait", api_url=url, token="t")
    assert result.returncode == 2
    assert f"cannot reach the Anvil API at {url}" in result.stderr
    assert "ANVIL_API_URL" in result.stderr

    result = anvil("cases", "create", "--file", str(tmp_path / "absent.json"), api_url=url, token="t")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_wait_follows_a_retry_to_the_attempt_that_counts(stack: Stack, attempts: AttemptCounter) -> None:
    body = {
        "name": "cli-flaky",
        "kind": "generic",
        "spec": {
            "workspace": "demo",
            "steps": [
                attempts.fail_first_step("cli-flaky")
            ],
        },
        "retry_policy": {"max_retries": 1, "retry_on": ["FAILED"], "backoff_base_s": 0.2},
    }
    assert stack.client.post("/api/v1/test-cases", json=body).status_code == 201

    waited = anvil("submit", "case", "cli-flaky", "--wait", **_at(stack))

    assert waited.returncode == 0, waited.stdout + waited.stderr
    first = waited.stdout.splitlines()[0].split()[-1]
    retry = re.search(r"retry: execution (\S+)", waited.stdout)
    assert retry, waited.stdout
    assert waited.stdout.index("step 1 failed") < waited.stdout.index("RETRYING") < retry.start()
    assert waited.stdout.splitlines()[-1].startswith("PASSED")
    retried = stack.get(retry.group(1))
    assert (retried["parent_execution_id"], retried["status"], retried["flaky"]) == (first, "PASSED", True)
    assert stack.get(first)["status"] == "RETRYING"


class CuttableProxy:
    """A TCP proxy in front of the API that can drop every open connection, then answer 503 a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()  # everything clients sent, to find the requests in it
        self.unavailable_until = 0.0
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, *, unavailable_s: float) -> None:
        with self.lock:
            self.unavailable_until = time.monotonic() + unavailable_s
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut(unavailable_s=0)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = client.recv(65536)
        with self.lock:
            self.sent += head
            unavailable = time.monotonic() < self.unavailable_until
        if unavailable:
            body = b'{"title":"Service Unavailable","status":503,"detail":"restarting"}'
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.sendall(head)
        with self.lock:
            self.open += [client, upstream]
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream, record=True)

    def _pipe(self, src: socket.socket, dst: socket.socket, *, record: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    with self.lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.close()
            except OSError:
                pass

    def event_requests(self) -> list[str]:
        """The head of every request for an event stream that reached the proxy, in order."""
        with self.lock:
            text = self.sent.decode(errors="replace")
        heads = [part.split("\r\n\r\n", 1)[0] for part in re.split(r"(?=GET |POST )", text)]
        return [head for head in heads if head.startswith("GET ") and "/events " in head.split("\r\n", 1)[0]]


def test_wait_survives_a_dropped_stream_and_a_503_without_gaps_or_repeats(
    stack: Stack, tmp_path: Path
) -> None:
    steps = [{"name": f"part {i}", "run": ["sh", "-c", f"echo {i}; sleep 0.6"]} for i in range(1, 7)]
    case_id = anvil("cases", "create", "-q", "--file", str(case_file(tmp_path, steps)), **_at(stack)).stdout
    proxy = CuttableProxy(int(stack.env["ANVIL_API_PORT"]))
    out_path = tmp_path / "wait.out"
    env = {k: v for k, v in os.environ.items() if k not in ("ANVIL_API_URL", "ANVIL_TOKEN")}
    env.update(
        ANVIL_API_URL=f"http://127.0.0.1:{proxy.port}", ANVIL_TOKEN=token_of(stack), PYTHONUNBUFFERED="1"
    )
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            anvil_argv("submit", "case", case_id.strip(), "--wait"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "step 2 passed" not in out_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        proxy.cut(unavailable_s=3)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()

    output = out_path.read_text()
    assert code == 0, output
    for i in range(1, 7):
        assert output.count(f"step {i} passed") == 1, output
    assert [line.split()[0] for line in output.splitlines() if re.match(r"  \S", line)] == [
        "QUEUED",
        "RUNNING",
        "PASSED",
    ], output
    streams = proxy.event_requests()
    resumed = [head for head in streams if "last-event-id:" in head.lower()]
    assert len(streams) >= 3 and resumed, streams
    assert streams[0] not in resumed and len(resumed) == len(streams) - 1, streams


def unboxed(text: str) -> str:
    """A usage error as one line: typer draws a box around it and wraps it."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def _at(stack: Stack) -> dict[str, str]:
    return {"api_url": stack.api_url, "token": token_of(stack)}


def test_submit_cases_runs_each_in_one_request_all_or_none(stack: Stack, tmp_path: Path) -> None:
    named = f"cli-batch-{uuid.uuid4().hex[:6]}"
    first = anvil(
        "cases", "create", "-q", "--file", str(case_file(tmp_path, [{"run": ["true"]}], named)), **_at(stack)
    )
    other = anvil(
        "cases", "create", "-q", "--file", str(case_file(tmp_path, [{"run": ["true"]}])), **_at(stack)
    )
    ids = [first.stdout.strip(), other.stdout.strip()]

    before = stack.client.get("/api/v1/executions", params={"run_id": "cli-batch"}).json()["items"]
    assert before == []
    refused = anvil("submit", "cases", named, str(uuid.uuid4()), "--run-id", "cli-batch", **_at(stack))
    assert refused.returncode == 2 and "does not exist" in refused.stderr
    assert stack.client.get("/api/v1/executions", params={"run_id": "cli-batch"}).json()["items"] == []

    done = anvil(
        "submit", "cases", named, ids[1], named, "--priority", "high", "--run-id", "cli-batch", **_at(stack)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    execution_ids = done.stdout.split()
    assert len(execution_ids) == 3 and len(set(execution_ids)) == 3
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = [stack.client.get(f"/api/v1/executions/{e}").json() for e in execution_ids]
        if all(s["status"] == "PASSED" for s in shown):
            break
        time.sleep(0.2)
    assert [s["test_case_id"] for s in shown] == [ids[0], ids[1], ids[0]]
    assert all(s["status"] == "PASSED" and s["priority"] == "HIGH" for s in shown), shown
