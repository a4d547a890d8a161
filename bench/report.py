"""What the benchmark prints (and writes with --json): rates, ratio, latency, CPU per task, machine."""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def report(
    args: argparse.Namespace,
    *,
    machine: dict[str, Any],
    concurrency: int,
    raw: dict[str, Any],
    raw_events: dict[str, Any],
    anvil: dict[str, Any],
    batched: dict[str, Any],
    watched: dict[str, Any],
    latency: dict[str, Any],
) -> dict[str, Any]:
    runs = {"raw": raw, "raw_events": raw_events, "single": anvil, "batched": batched, "watched": watched}
    labels = {
        "raw": "(a) no-op",
        "raw_events": "(a) no-op, events",
        "single": "(b) one each",
        "batched": f"(b) batch {args.batch}",
        "watched": "(b) batch, events",
    }
    rate = {name: args.n / run["elapsed_s"] for name, run in runs.items()}
    lat = latency["submit_to_running_ms"]
    rtt = latency["post_round_trip_ms"]
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    rtt50, rtt99 = percentile(rtt, 50), percentile(rtt, 99)
    # CPU milliseconds per task by process group, and the rate they would allow on every CPU.
    cpu = {name: {k: v * 1000 / args.n for k, v in run["cpu_s"].items()} for name, run in runs.items()}
    cap = {name: machine["nproc"] * 1000 / sum(per.values()) for name, per in cpu.items()}
    anvils = {"single": "one request each", "batched": f"batches of {args.batch}"}

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"Anvil benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  commit {machine['commit']}")
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
        f"load average at start {machine['loadavg']}, Python {machine['python']}"
    )
    print(f"one worker, concurrency {concurrency} (prefork, prefetch 1, acks_late), broker {args.redis_url}")
    print()
    for name, how in (("raw", "task events off"), ("raw_events", "task events on (-E)")):
        print(
            f"(a) raw Celery no-op task, {how + ':':21} {args.n} tasks in {runs[name]['elapsed_s']:.2f} s"
            f" = {rate[name]:8.1f} /s"
        )
    for name, label in anvils.items():
        run = runs[name]
        print(
            f"(b) Anvil end-to-end, `true`, {label}: {args.n} executions in {run['elapsed_s']:.2f} s"
            f" = {rate[name]:.1f} /s  (API submit from {args.threads} threads -> PASSED in PostgreSQL)"
        )
        print(
            f"    all submitted after {run['submit_s']:.2f} s; worker time per execution (claim -> final"
            f" status) {run['worker_ms_mean']:.1f} ms on average"
        )
        print(
            f"    (b)/(a) = {rate[name] / rate['raw']:.3f} against (a) without events, target >= 0.25:"
            f" {verdict(rate[name] / rate['raw'] >= 0.25)};"
            f" {rate[name] / rate['raw_events']:.3f} against (a) with events"
        )
    print(
        f"(b) the same in batches, task events enabled by broadcast (as while Flower runs):"
        f" {args.n} in {watched['elapsed_s']:.2f} s = {rate['watched']:.1f} /s;"
        f" against (a) with events {rate['watched'] / rate['raw_events']:.3f}"
    )
    print(f"(c) submit -> RUNNING, idle worker, {len(lat)} sequential submissions:")
    print(f"    p50 {p50:6.1f} ms   target <= 25 ms: {verdict(p50 <= 25)}")
    print(f"    p99 {p99:6.1f} ms   target <= 100 ms: {verdict(p99 <= 100)}")
    print(f"    (POST /api/v1/executions/case round trip: p50 {rtt50:.1f} ms, p99 {rtt99:.1f} ms)")
    print(
        "    latency = started_at - created_at: created_at is the API host's clock at the insert,\n"
        "    started_at is PostgreSQL's now() at the claim; both are this host's clock here."
    )
    print()
    groups = list(dict.fromkeys([*cpu["single"], *cpu["raw"]]))
    print(
        "CPU ms per task      " + "".join(f"{g:>10}" for g in groups) + "     total   rate if alone   steal"
    )
    for name, label in labels.items():
        cells = "".join(f"{cpu[name][g]:10.2f}" if g in cpu[name] else f"{'-':>10}" for g in groups)
        print(
            f"{label:21}{cells}{sum(cpu[name].values()):10.2f}   {cap[name]:8.1f} /s"
            f"   {_percent(runs[name].get('steal'))}"
        )
    print(
        f"    (b)/(a) by CPU cost, against (a) without events: {cap['single'] / cap['raw']:.3f} one request"
        f" each, {cap['batched'] / cap['raw']:.3f} batched;\n"
        f"    against (a) with events: {cap['single'] / cap['raw_events']:.3f} one request each,"
        f" {cap['batched'] / cap['raw_events']:.3f} batched, {cap['watched'] / cap['raw_events']:.3f}"
        " batched with events\n"
        "    (less sensitive to other load; redis is the whole server)\n"
        "    steal: share of the machine's CPU time the hypervisor gave to other guests meanwhile"
    )
    return {
        "machine": machine,
        "n": args.n,
        "threads": args.threads,
        "batch": args.batch,
        "raw_celery_per_s": round(rate["raw"], 1),
        "raw_celery_events_per_s": round(rate["raw_events"], 1),
        "anvil_per_s": round(rate["single"], 1),
        "anvil_batched_per_s": round(rate["batched"], 1),
        "anvil_batched_events_per_s": round(rate["watched"], 1),
        "anvil_submit_s": round(anvil["submit_s"], 3),
        "anvil_worker_ms_mean": round(anvil["worker_ms_mean"], 2),
        # Against (a) without task events, then against (a) with them (-E).
        "ratio": round(rate["single"] / rate["raw"], 3),
        "ratio_batched": round(rate["batched"] / rate["raw"], 3),
        "ratio_vs_events": round(rate["single"] / rate["raw_events"], 3),
        "ratio_batched_vs_events": round(rate["batched"] / rate["raw_events"], 3),
        "ratio_batched_events_vs_events": round(rate["watched"] / rate["raw_events"], 3),
        "latency_samples": len(lat),
        "submit_to_running_p50_ms": round(p50, 2),
        "submit_to_running_p99_ms": round(p99, 2),
        "post_round_trip_p50_ms": round(rtt50, 2),
        "post_round_trip_p99_ms": round(rtt99, 2),
        "cpu_ms_per_task": {name: _rounded(per) for name, per in cpu.items()},
        "ratio_by_cpu": round(cap["single"] / cap["raw"], 3),
        "ratio_by_cpu_batched": round(cap["batched"] / cap["raw"], 3),
        "ratio_by_cpu_vs_events": round(cap["single"] / cap["raw_events"], 3),
        "ratio_by_cpu_batched_vs_events": round(cap["batched"] / cap["raw_events"], 3),
        "ratio_by_cpu_batched_events_vs_events": round(cap["watched"] / cap["raw_events"], 3),
        "steal": {name: run.get("steal") for name, run in runs.items()},
    }


def _percent(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:4.1f}%"


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in values.items()}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(kib / 1024 / 1024, 1),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "commit": commit,
    }
