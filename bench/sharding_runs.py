"""How the sharding benchmark runs things: plain pytest (and pytest-xdist) from the bench venv, and
an Anvil pytest case from its submit to the parent's final status, with its rows, timeline and CPU.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import CpuMeter, with_descendants
from bench.sharding_report import epoch, junit_seconds, pytest_counts, timeline
from bench.sharding_setup import SUITE_ARGS, Stack
from bench.sharding_watch import MachineCpu, ProcessWatch, WorkerCpu

UNFINISHED = {"PENDING", "SCHEDULED", "QUEUED", "RUNNING", "PAUSED"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pytest_env(stack: Stack, *, bytecode: bool = True) -> dict[str, str]:
    """What a developer's shell gives pytest, without Anvil's settings (as the sandbox scrubs them)."""
    home = stack.tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the worker runs its tests: nothing written
    return env


def run_pytest(
    stack: Stack, workspace: Path, extra: list[str], *, suite_args: list[str] = SUITE_ARGS
) -> dict[str, Any]:
    """Plain pytest from the bench venv on the workspace: wall time, CPU time, pytest's counts, and
    the sum of its tests' own times (from a JUnit report)."""
    shutil.rmtree(workspace / ".hypothesis", ignore_errors=True)  # each run starts without examples
    junit = stack.tmp / f"junit-{uuid.uuid4().hex[:6]}.xml"
    argv = [str(stack.python), "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    argv += [*suite_args, *extra]
    machine = MachineCpu()
    machine.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=workspace, env=pytest_env(stack, bytecode=False), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=900)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    counts = pytest_counts(output)
    if not counts:
        raise RuntimeError(f"{' '.join(argv)} printed no summary (exit {proc.returncode}):\n{output[-3000:]}")
    return {
        "elapsed_s": round(elapsed, 3),
        "cpu_s": round(cpu, 2),
        "others_cpu_s": round(machine.others(cpu), 2),
        "counts": counts,
        "exit_code": proc.returncode,
        "tests_s": round(junit_seconds(junit), 2),
    }


def create_case(client: httpx.Client, workspace: str, args: list[str], *, timeout_s: int) -> str:
    body = {
        "name": f"bench-{workspace}-{uuid.uuid4().hex[:6]}",
        "kind": "pytest",
        "spec": {"workspace": workspace, "args": args, "shards": "auto"},
        "timeout_s": timeout_s,
    }
    response = client.post("/api/v1/test-cases", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"creating the case answered {response.status_code}: {response.text[:500]}")
    return str(response.json()["id"])


def run_case(
    stack: Stack, client: httpx.Client, case_id: str, workers: list[Any], *, shards: int | None = None
) -> dict[str, Any]:
    """Submit the case once and wait for its final status; its rows, timeline and CPU."""
    from sqlalchemy import text

    from db.session import new_session

    meter, split, machine = cpu_meter(stack), WorkerCpu(workers), MachineCpu()
    meter.start()
    split.start()
    machine.start()
    body: dict[str, Any] = {"test_case_id": case_id}
    if shards is not None:
        body["shards"] = shards
    watch = ProcessWatch()  # from before the submit: the parent's collection starts at once
    watch.scan()
    submitted = time.time()
    response = client.post("/api/v1/executions/case", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"submitting answered {response.status_code}: {response.text[:500]}")
    parent_id = response.json()["id"]
    deadline = time.monotonic() + 1200
    with watch:
        while True:
            with new_session() as session:
                status = session.execute(
                    text("SELECT status FROM executions WHERE id = :i"), {"i": parent_id}
                ).scalar_one()
            if status not in UNFINISHED:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {parent_id} still {status} after 1200 s; see the logs")
            time.sleep(0.1)
    cpu = {**split.stop(), **meter.stop()}
    others = machine.others(sum(cpu.values()))
    takings = taken_per_shard(parent_id)
    parent = client.get(f"/api/v1/executions/{parent_id}", params={"include": "transitions"}).json()
    shard_rows = client.get("/api/v1/executions", params={"parent_execution_id": parent_id, "limit": 100})
    shard_list = list(shard_rows.json()["items"])
    steps = client.get(f"/api/v1/executions/{parent_id}/steps").json()
    if parent["status"] not in ("PASSED", "FAILED") or any(s["status"] == "ERROR" for s in shard_list):
        errors = [s["error"] for s in shard_list if s.get("error")]
        print(f"    warning: {parent_id} ended {parent['status']} ({parent['error']}); shards: {errors[:3]}")
    return {
        "id": parent_id,
        "wall_s": epoch(parent["finished_at"]) - submitted,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "steal": meter.stolen,
        "others_cpu_s": round(others, 2),
        "parent": parent,
        "shards": shard_list,
        "steps": steps,
        "timeline": timeline(parent, shard_list, steps, takings, pytest_processes(watch, parent, shard_list))
        if shard_list
        else None,
    }


def pytest_processes(
    watch: ProcessWatch, parent: dict[str, Any], shards: list[dict[str, Any]]
) -> dict[str, tuple[float, float]]:
    """Execution id -> (start, last seen) of the pytest process it ran: the parent's collection,
    each shard's run. Matched by the pool process (the pid its ``worker`` column ends in) and time."""
    found = {}
    for execution, kind in [(parent, "collect"), *((s, "run") for s in shards)]:
        try:
            pool = int(str(execution["worker"]).rsplit("/", 1)[1])
        except (IndexError, ValueError):
            continue
        until = (
            min(epoch(s["created_at"]) for s in shards)
            if kind == "collect"
            else epoch(execution["finished_at"])
        )
        seen = watch.processes(kind, pool, epoch(execution["started_at"]), until)
        if seen:
            found[str(execution["id"])] = (seen[0].started, seen[0].last_seen)
    return found


def taken_per_shard(parent_id: str) -> dict[str, tuple[int, int]]:
    """Each shard's trips to the plan (one UPDATE each: its takings share a taken_at) and the tests
    it took that were planned for another shard (stolen)."""
    from sqlalchemy import text

    from db.session import new_session

    with new_session() as session:
        rows = session.execute(
            text(
                "SELECT t.taken_by, count(DISTINCT t.taken_at),"
                " count(*) FILTER (WHERE t.shard <> (e.selection -> 'shard' ->> 'index')::int)"
                " FROM shard_tests t JOIN executions e ON e.id = t.taken_by"
                " WHERE t.parent_execution_id = :p GROUP BY t.taken_by"
            ),
            {"p": parent_id},
        ).all()
    return {str(shard): (int(trips), int(stolen)) for shard, trips, stolen in rows}


def cpu_meter(stack: Stack) -> CpuMeter:
    groups = {
        "api": lambda: with_descendants(next(c.pid for c in stack.children if c.name == "api")),
        "postgres": stack.pg_backends,
    }
    if stack.redis_proc is not None:
        pid = stack.redis_proc.pid
        groups["redis"] = lambda: [pid]
    return CpuMeter(groups)


def strip(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its bulky rows (steps), for the JSON."""
    parent = {k: run["parent"].get(k) for k in ("id", "status", "summary", "shard_plan", "created_at",
                                                "started_at", "finished_at")}  # fmt: skip
    return {**{k: v for k, v in run.items() if k not in ("parent", "shards", "steps")}, "parent": parent}
