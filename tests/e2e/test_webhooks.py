"""Webhooks through real processes: the beat's sender delivers exactly one signed request per
finished run to a receiver that is down for a while, while the worker is restarted mid-run; and
`anvil webhooks` drives the API."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

from tests.e2e.conftest import StackFactory
from tests.webhook_receiver import Receiver

RUNS = 8


def test_one_signed_delivery_per_run_across_a_receiver_outage_and_a_worker_restart(
    make_stack: StackFactory,
) -> None:
    receiver = Receiver(answer=503).start()  # down from the start
    try:
        stack = make_stack(env={"ANVIL_WEBHOOK_BACKOFF_S": "0.2", "ANVIL_WEBHOOK_POLL_S": "0.2"})
        created = stack.client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["execution.finished"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        case = stack.create_case(
            [{"name": "work", "run": [sys.executable, "-c", "import time; time.sleep(1)"]}]
        )
        submitted = [stack.submit(case["id"])["id"] for _ in range(RUNS)]
        stack.wait_status(submitted[1], {"PASSED"})
        stack.stop_worker(stack.workers[0])  # warm shutdown mid-run: the rest waits for the new worker
        stack.start_worker()
        for execution_id in submitted:
            stack.wait_status(execution_id, {"PASSED"})
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline and len({r.headers["webhook-id"] for r in receiver.requests}) < RUNS
        ):
            time.sleep(0.2)
        refused = len(receiver.requests)
        assert refused >= RUNS, "every run's delivery was tried while the receiver was down"
        receiver.answer = 200  # back up
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.accepted()) < RUNS:
            time.sleep(0.2)
        time.sleep(2)  # anything sent twice would arrive now
        accepted = receiver.accepted()
        payloads = [r.verified(hook["secret"]) for r in accepted]  # each signature checks out
        assert Counter(p["data"]["execution_id"] for p in payloads) == Counter(submitted)
        assert len({r.headers["webhook-id"] for r in accepted}) == RUNS
        assert {p["data"]["status"] for p in payloads} == {"PASSED"}
        log = stack.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        assert len(log) == RUNS and {d["status"] for d in log} == {"delivered"}
        assert all(d["attempts"] >= 2 and d["last_status_code"] == 200 for d in log)
    finally:
        receiver.stop()


def test_the_cli_creates_tests_and_shows_a_subscription(make_stack: StackFactory) -> None:
    receiver = Receiver().start()
    try:
        stack = make_stack(workers=0, env={"ANVIL_WEBHOOK_POLL_S": "0.2"})
        token = stack.client.headers["Authorization"].split()[1]
        cli = [sys.executable, "-m", "anvil.cli", "webhooks"]
        env = {"ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": token, "PATH": "/usr/bin:/bin"}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 0, done.stderr
            return done

        created = run(
            "create", receiver.url, "--event", "execution.finished", "--format", "slack", "--status", "FAILED"
        )
        secret = created.stdout.strip()
        assert secret.startswith("whsec_") and "shown only now" in created.stderr
        (hook,) = stack.client.get("/api/v1/webhooks").json()["items"]
        assert hook["format"] == "slack" and hook["filters"] == {"statuses": ["FAILED"]}
        run("test", hook["id"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not receiver.accepted():
            time.sleep(0.2)
        (got,) = receiver.accepted()
        assert got.verified(secret) == {"text": "*Anvil test event*\nThis subscription works."}
        shown = run("show", hook["id"]).stdout
        assert "webhook.test" in shown and "delivered" in shown and "200" in shown
        refused = subprocess.run(
            [*cli, "create", "ftp://x", "--event", "execution.finished"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert refused.returncode != 0 and "http:// or https://" in refused.stderr + refused.stdout
    finally:
        receiver.stop()
