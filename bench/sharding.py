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
      configuration runs once unmeasured first, so that its measured run is planned from history;
      beside each, the tool a user already has on the same cores: ``pytest -n <slots>`` (plain
      ``pytest`` for one slot).
It builds (once) a venv of its own under ~/.cache/anvil-bench/ with Anvil, attrs and its test
dependencies, and runs Anvil's processes and the plain pytest runs from it; it uses a database of
its own and a private redis-server (or --redis-url), and stops every process it started, also on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import machine_info  # noqa: E402
from bench.sharding_report import print_summary, traced  # noqa: E402
from bench.sharding_runs import auth, create_case, pytest_env, run_case, run_pytest, strip  # noqa: E402
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

SLEEPY = "sleepy"  # the workspace of part (2)


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


# --- (2) scale-out on sleep-bound tests ---------------------------------------------------------


def measure_scale(stack: Stack, client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    workspace = stack.workspaces / SLEEPY
    sleeps = write_sleep_suite(workspace, tests=args.sleep_tests, seed=args.seed)
    total = sum(sleeps.values())
    print(
        f"(2) {len(sleeps)} tests sleeping 50-500 ms (seed {args.seed}), {total:.1f} s of sleep in all;"
        " each configuration runs once unmeasured first (so the measured run is planned from history)",
        flush=True,
    )
    # The bench venv holds hypothesis (for attrs); its pytest plugin would add about half a second
    # to every pytest start and exit here, which is no part of what this measures.
    suite_args = ["tests", "-p", "no:hypothesispytest"]
    case_id = create_case(client, SLEEPY, suite_args, timeout_s=1800)
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
        # The tool a user already has, on the same cores with as many processes: plain pytest for
        # one slot, pytest -n <slots> (pytest-xdist) for the rest. Run with no worker up.
        xdist_args = [] if slots == 1 else ["-n", str(slots)]
        xdist = run_pytest(stack, workspace, xdist_args, suite_args=suite_args)
        problems = traced(
            run["parent"], run["steps"], expected={"passed": len(sleeps)}, collected=list(sleeps)
        )
        if xdist["counts"] != {"passed": len(sleeps)}:
            problems.append(f"pytest {' '.join(xdist_args)} counted {xdist['counts']}")
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
            "pytest": {"args": xdist_args, "wall_s": xdist["elapsed_s"], "cpu_s": xdist["cpu_s"]},
            "problems": problems,
        }
        rows.append(row)
        print(
            f"    {label:22} warm-up {warm['wall_s']:6.2f} s, measured {run['wall_s']:6.2f} s;"
            f" pytest {' '.join(xdist_args) or '(one process)'} {xdist['elapsed_s']:6.2f} s",
            flush=True,
        )
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(base / row["wall_s"], 3)
        row["efficiency"] = round(row["speedup"] / row["slots"], 3)
        # Against the same baseline (Anvil on one slot), so the two efficiencies compare directly.
        row["pytest"]["efficiency"] = round(base / row["pytest"]["wall_s"] / row["slots"], 3)
    return {"tests": len(sleeps), "sleep_s": round(total, 3), "seed": args.seed, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
