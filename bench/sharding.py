"""Sharding benchmark: one pytest case split across worker slots, against pytest and pytest-xdist.

    .venv/bin/python -m bench.sharding [--only suite|scale] [--json bench/results/shard-$(date +%F).json]

One run measures, on this machine:
  (1) a real third-party suite (attrs's own tests, from its pinned sdist on PyPI, about 1,400
      tests) in rounds (--rounds, 3) of: plain ``pytest``, ``pytest -n 2`` (pytest-xdist), and an
      Anvil pytest case with ``shards: "auto"`` on one ``anvil worker -c 2``, from submit to the
      parent's final status (round 1: no history; round 3: planned from the first two); it checks
      that every test ran exactly once and that the counts are pytest's own, and says where the
      time went;
  (2) scale-out on sleep-bound tests (400 tests sleeping a fixed pseudo-random 50-500 ms each, so
      the 2 cores do not cap it): one case with ``shards: "auto"`` on 1, 2, 4 and 8 worker
      processes of concurrency 2, against one slot (one worker -c 1, ``shards: 1``); each
      configuration runs once unmeasured first, so that its measured run is planned from history.
It builds (once) a venv of its own under ~/.cache/anvil-bench/ with Anvil, attrs and its test
dependencies, and runs Anvil's processes and the plain pytest runs from it; it uses a database of
its own and a private redis-server (or --redis-url), and stops every process it started, also on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter, with_descendants  # noqa: E402
from bench.report import machine_info  # noqa: E402
from bench.sharding_report import (  # noqa: E402
    epoch,
    junit_seconds,
    print_summary,
    pytest_counts,
    timeline,
    traced,
)
from bench.sharding_setup import (  # noqa: E402
    PROJECT,
    SDIST,
    SUITE_ARGS,
    VERSION,
    Stack,
    cache_dir,
    ensure_sdist,
    ensure_venv,
    unpack_suite,
    write_sleep_suite,
)
from bench.sharding_watch import MachineCpu, ProcessWatch, WorkerCpu  # noqa: E402

UNFINISHED = {"PENDING", "SCHEDULED", "QUEUED", "RUNNING", "PAUSED"}


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    # Also when started in the background by a script, which leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    machine = machine_info()  # the load average before this run adds its own
    began = time.monotonic()
    if os.getloadavg()[0] > (os.cpu_count() or 1) / 2:
        print(f"warning: load average {machine['loadavg']}: other work is running, the figures will show it")
    python = ensure_venv(args.cache)
    stack = Stack(python=python, pg_admin=args.pg_admin, redis_url=args.redis_url)
    results: dict[str, Any] = {"machine": machine}
    status = 1
    try:
        stack.setup()
        stack.start_api()
        with httpx.Client(base_url=stack.api_url, headers=auth(stack.token), timeout=60) as client:
            if args.only in (None, "suite"):
                results["suite"] = measure_suite(stack, client, args)
            if args.only in (None, "scale"):
                results["scale"] = measure_scale(stack, client, args)
        results["elapsed_s"] = round(time.monotonic() - began, 1)
        print_summary(results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        status = 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        status = 130
    finally:
        stack.cleanup(keep_logs=status == 1 or args.keep_logs)
    return status


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("suite", "scale"), help="measure only (1) or only (2)")
    parser.add_argument(
        "--scale-workers", default="1,2,4,8", help="worker processes (-c 2 each) for (2), comma-separated"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of pytest, pytest -n 2 and an Anvil run in (1); at least 3",
    )
    parser.add_argument("--sleep-tests", type=int, default=400, help="sleeping tests in (2)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sleep times in (2)")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("ANVIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL allowed to create and drop the bench database",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ANVIL_BENCH_REDIS"),
        help="an EMPTY Redis DB for the broker (flushed at the end); default: a private redis-server",
    )
    parser.add_argument(
        "--cache", type=Path, default=cache_dir(), help="where the venv and the sdist are kept"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    try:
        args.workers = [int(n) for n in args.scale_workers.split(",")]
    except ValueError:
        parser.error("--scale-workers takes numbers separated by commas, e.g. 1,2,4,8")
    if not all(1 <= n <= 32 for n in args.workers) or not 10 <= args.sleep_tests <= 5000 or args.rounds < 3:
        parser.error("--scale-workers: 1 to 32 each; --sleep-tests: 10 to 5000; --rounds: 3 or more")
    return args


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- (1) the third-party suite ------------------------------------------------------------------


def measure_suite(stack: Stack, client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    workspace = stack.workspaces / PROJECT
    unpack_suite(ensure_sdist(stack.python, args.cache / "sdists"), workspace)
    # Collection imports every test module once and leaves their bytecode (and pytest's rewritten
    # asserts) in the workspace, so no measured run pays for compiling them.
    collected = collect_ids(stack, workspace)
    print(f"(1) {PROJECT} {VERSION} ({SDIST}): {len(collected)} tests collected", flush=True)
    workers = stack.start_workers(1, 2)
    case_id = create_case(client, PROJECT, [*SUITE_ARGS], timeout_s=900)
    # Rounds of pytest, pytest -n 2 and the Anvil run one after the other: on a shared machine the
    # load changes over minutes, and each Anvil run is compared with the runs beside it.
    rounds = []
    for n in range(1, args.rounds + 1):
        plain = run_pytest(stack, workspace, [])
        xdist = run_pytest(stack, workspace, ["-n", "2"])
        shutil.rmtree(workspace / ".hypothesis", ignore_errors=True)
        run = run_case(stack, client, case_id, workers)
        run["problems"] = traced(run["parent"], run["steps"], expected=plain["counts"], collected=collected)
        rounds.append({"pytest": plain, "xdist": xdist, "anvil": strip(run)})
        print(
            f"    round {n}: pytest {plain['elapsed_s']:6.2f} s, pytest -n 2 {xdist['elapsed_s']:6.2f} s,"
            f" Anvil {run['wall_s']:6.2f} s ({run['parent']['status']}, {len(run['shards'])} shards)"
            + ("" if not run["problems"] else "  COUNTS DIFFER (see below)"),
            flush=True,
        )
        if xdist["counts"] != plain["counts"]:
            print(f"    note: pytest -n 2 counted {xdist['counts']}, pytest {plain['counts']}")
    stack.stop_workers(workers)
    return {
        "project": f"{PROJECT}=={VERSION}",
        "args": SUITE_ARGS,
        "tests": len(collected),
        "counts": rounds[0]["pytest"]["counts"],
        "rounds": rounds,
    }


def collect_ids(stack: Stack, workspace: Path) -> list[str]:
    argv = [str(stack.python), "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *SUITE_ARGS]
    done = subprocess.run(
        argv, cwd=workspace, env=pytest_env(stack), capture_output=True, text=True, check=False
    )
    ids = [line for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if done.returncode != 0 or not ids:
        raise RuntimeError(f"pytest --collect-only failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    return ids


def pytest_env(stack: Stack, *, bytecode: bool = True) -> dict[str, str]:
    """What a developer's shell gives pytest, without Anvil's settings (as the sandbox scrubs them)."""
    home = stack.tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the worker runs its tests: nothing written
    return env


def run_pytest(stack: Stack, workspace: Path, extra: list[str]) -> dict[str, Any]:
    """Plain pytest from the bench venv on the workspace: wall time, CPU time, pytest's counts, and
    the sum of its tests' own times (from a JUnit report)."""
    shutil.rmtree(workspace / ".hypothesis", ignore_errors=True)  # each run starts without examples
    junit = stack.tmp / f"junit-{uuid.uuid4().hex[:6]}.xml"
    argv = [str(stack.python), "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    argv += [*SUITE_ARGS, *extra]
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


# --- (2) scale-out on sleep-bound tests ---------------------------------------------------------


def measure_scale(stack: Stack, client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    sleeps = write_sleep_suite(stack.workspaces / "sleepy", tests=args.sleep_tests, seed=args.seed)
    total = sum(sleeps.values())
    print(
        f"(2) {len(sleeps)} tests sleeping 50-500 ms (seed {args.seed}), {total:.1f} s of sleep in all;"
        " each configuration runs once unmeasured first (so the measured run is planned from history)",
        flush=True,
    )
    # The bench venv holds hypothesis (for attrs); its pytest plugin would add about half a second
    # to every pytest start and exit here, which is no part of what this measures.
    case_id = create_case(client, "sleepy", ["tests", "-p", "no:hypothesispytest"], timeout_s=1800)
    configs = [("1 slot, shards 1", 1, 1, 1)] + [
        (f"{n} worker{'s' if n > 1 else ''} x -c 2", n, 2, None) for n in args.workers
    ]
    rows = []
    for label, count, concurrency, shards in configs:
        workers = stack.start_workers(count, concurrency)
        try:
            warm = run_case(stack, client, case_id, workers, shards=shards)
            run = run_case(stack, client, case_id, workers, shards=shards)
        finally:
            stack.stop_workers(workers)
        slots = count * concurrency
        problems = traced(
            run["parent"], run["steps"], expected={"passed": len(sleeps)}, collected=list(sleeps)
        )
        row = {
            "config": label,
            "workers": count,
            "slots": slots,
            "shards": len(run["shards"]) or 1,
            "warmup_s": round(warm["wall_s"], 3),
            "wall_s": round(run["wall_s"], 3),
            "ideal_s": round(total / slots, 3),
            "imbalance": run["timeline"]["imbalance"] if run["timeline"] else None,
            "timeline": run["timeline"],
            "cpu_s": run["cpu_s"],
            "steal": run["steal"],
            "others_cpu_s": run["others_cpu_s"],
            "problems": problems,
        }
        rows.append(row)
        print(f"    {label:22} warm-up {warm['wall_s']:6.2f} s, measured {run['wall_s']:6.2f} s", flush=True)
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(base / row["wall_s"], 3)
        row["efficiency"] = round(row["speedup"] / row["slots"], 3)
    return {"tests": len(sleeps), "sleep_s": round(total, 3), "seed": args.seed, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
