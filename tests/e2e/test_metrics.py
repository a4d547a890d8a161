"""Prometheus metrics of real processes: a worker's and a beat's ``--metrics-port``, the API's
``/metrics``, with the values of a worker's prefork pool children and of the API's uvicorn worker
processes summed into one scrape (multiprocess mode)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from anvil.cli.processes import spawn, wait_http, wait_log
from tests.e2e.conftest import START_TIMEOUT_S, Stack, StackFactory, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= series)


def start_with_metrics(stack: Stack, role: str, args: list[str]) -> str:
    port = free_port()
    child = spawn(
        role,
        [*args, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
        env=stack.env,
        log=stack.root / "logs" / f"{role}.log",
        cwd=stack.root,
    )
    stack.children.append(child)
    wait_log(child, "ready." if role == "worker" else "beat: Starting", timeout=START_TIMEOUT_S)
    return f"http://127.0.0.1:{port}/metrics"


def test_a_run_is_counted_once_across_the_api_the_workers_pool_and_the_beat(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0, beat=False)
    worker_url = start_with_metrics(stack, "worker", ["worker", "-c", "2", "-n", "metrics@%h"])
    beat_url = start_with_metrics(stack, "beat", ["beat"])
    case = stack.create_case([{"name": "nap", "run": ["sleep", "1"]}])

    ids = [stack.submit(case["id"], priority="HIGH")["id"] for _ in range(4)]
    finished = [stack.wait_final(ident) for ident in ids]
    assert [e["status"] for e in finished] == ["PASSED"] * 4
    # Two slots ran them side by side: two pool processes, each writing its own values.
    assert len({e["worker"] for e in finished}) == 2, [e["worker"] for e in finished]

    worker, api, beat = scrape(worker_url), scrape(f"{stack.api_url}/metrics"), scrape(beat_url)
    labels = {"kind": "generic", "trigger_kind": "api"}
    passed = "anvil_executions_finished_total"
    assert value(worker, passed, **labels, status="PASSED") == 4
    assert [total(s, passed) for s in (api, beat)] == [0, 0]  # counted where it happened, once
    assert value(api, "anvil_executions_created_total", **labels, status="QUEUED") == 4
    assert [total(s, "anvil_executions_created_total") for s in (worker, beat)] == [0, 0]
    assert value(worker, "anvil_execution_run_seconds_count", priority="HIGH") == 4
    assert value(worker, "anvil_execution_run_seconds_sum", priority="HIGH") >= 4.0  # 4 x sleep 1
    assert value(worker, "anvil_execution_run_seconds_bucket", priority="HIGH", le="0.5") == 0
    assert value(worker, "anvil_execution_queue_wait_seconds_count", priority="HIGH") == 4
    submitted = {"method": "POST", "route": "/api/v1/executions/case", "status": "201"}
    assert value(api, "anvil_http_requests_total", **submitted) == 4
    assert value(beat, "anvil_tick_duration_seconds_count", leader="true") >= 1
    # The database gauges: the worker is live with its two slots, and nothing waits any more.
    assert value(api, "anvil_workers_live") == 1 and total(api, "anvil_worker_slots") == 2
    assert total(api, "anvil_queue_depth") == 0 and value(api, "anvil_database_up") == 1


def test_the_api_sums_its_worker_processes_into_one_scrape(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    api = spawn(
        "api2",
        ["api", "--workers", "2", "--port", str(port)],
        env={**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        log=tmp_path / "logs" / "api2.log",
        cwd=tmp_path,
    )
    stack.children.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", timeout=START_TIMEOUT_S, child=api)
    (own,) = metrics_dir.iterdir()  # this API's own directory under the one given
    assert own.name == f"api-{api.pid}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(pids_of(own)) < 2:  # both uvicorn workers have started and written their values
        assert time.monotonic() < deadline, f"one process wrote metrics: {sorted(own.iterdir())}"
        time.sleep(0.2)

    for _ in range(30):  # a new connection each: the processes share the listening socket
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    answered = {"method": "GET", "route": "/healthz", "status": "200"}
    counts = {value(scrape(f"{url}/metrics"), "anvil_http_requests_total", **answered) for _ in range(6)}
    assert counts == {30.0}  # whichever process answers the scrape (the start-up wait was /readyz)


def pids_of(directory: Path) -> set[str]:
    """The processes that wrote values there (files are named <type>_<pid>.db)."""
    return {path.stem.rpartition("_")[2] for path in directory.glob("*.db")}
