"""Where the time of one sharded run went, read back through the API, and whether every test was
traced (bench/sharding.py).

All times come from the rows (PostgreSQL's clock for the executions, the test process's for the
steps; one host here, so one clock):

- queue: the parent's created_at -> started_at (its claim);
- plan: the parent's claim -> its shards' created_at (pytest --collect-only in the sandbox, the
  history and slot look-ups, the plan's insert);
- dispatch: shards' created_at -> each shard's claim;
- startup: a shard's claim -> its first test's start (handout prepared, sandbox and pytest started,
  the plan's files collected);
- tests: the durations pytest gave its tests (setup + call + teardown);
- between: the rest of a shard's time from its first test's start to its last one's end (asking
  the worker for the next test, pytest's own work between tests, recording);
- tail: a shard's last test's end -> its finished_at (pytest's exit, the final write);
- settle: the last shard's finished_at -> the parent's finished_at.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

# pytest's own closing line: "1 failed, 1376 passed, 8 skipped, 1 xfailed in 15.88s".
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b")
CATEGORIES = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")


def pytest_counts(output: str) -> dict[str, int]:
    """The counts of pytest's closing summary line (errors as "error"; warnings left out)."""
    line = next((line for line in reversed(output.strip().splitlines()) if " in " in line), "")
    counts: dict[str, int] = {}
    for n, kind in SUMMARY.findall(line):
        kind = "error" if kind.startswith("error") else kind
        if kind in CATEGORIES:
            counts[kind] = int(n)
    return counts


def junit_seconds(path: Path) -> float:
    """The sum of the test times in a JUnit report (setup + call + teardown, pytest's default)."""
    root = ElementTree.parse(path).getroot()
    return sum(float(case.get("time") or 0) for case in root.iter("testcase"))


def epoch(value: str | None) -> float:
    if value is None:
        raise ValueError("a time the analysis needs is missing")
    return datetime.fromisoformat(value).timestamp()


def timeline(
    parent: dict[str, Any],
    shards: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    takings: dict[str, tuple[int, int]],
    processes: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    """The phases of one sharded run (seconds), and each shard's planned against actual time.
    ``takings``: shard execution id -> (trips to the plan, tests stolen from other shards);
    ``processes``: execution id -> (start, last seen) of its pytest process (the parent's:
    its collection), where the watcher saw one."""
    plan = {p["execution_id"]: p for p in (parent.get("shard_plan") or {}).get("shards", [])}
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        by_shard.setdefault(step["execution_id"], []).append(step)
    created = min(epoch(s["created_at"]) for s in shards)
    rows = []
    for shard in shards:
        own = [s for s in by_shard.get(shard["id"], []) if s["started_at"] and s["finished_at"]]
        started, finished = epoch(shard["started_at"]), epoch(shard["finished_at"])
        first = min((epoch(s["started_at"]) for s in own), default=finished)
        last = max((epoch(s["finished_at"]) for s in own), default=finished)
        tests_s = sum(s["duration_s"] or 0.0 for s in own)
        # Without the process: its startup counts as preparation, its tail as recording.
        began, ended = processes.get(shard["id"], (started, finished))
        planned = plan.get(shard["id"], {})
        rows.append(
            {
                "index": (shard.get("selection") or {}).get("shard", {}).get("index"),
                "status": shard["status"],
                "planned_tests": planned.get("tests"),
                "planned_s": planned.get("planned_s"),
                "ran_tests": len(own),
                "trips": takings.get(shard["id"], (0, 0))[0],
                "stolen": takings.get(shard["id"], (0, 0))[1],
                "seconds": finished - started,
                "dispatch_s": started - created,
                "startup_s": first - started,
                "prep_s": began - started,
                "boot_s": first - began,
                "tests_s": tests_s,
                "between_s": max(0.0, last - first - tests_s),
                "tail_s": finished - last,
                "exit_s": ended - last if ended != finished else 0.0,
                "record_s": finished - ended if ended != finished else finished - last,
            }
        )
    rows.sort(key=lambda r: r["index"] or 0)
    seconds = [r["seconds"] for r in rows]
    mean = sum(seconds) / len(seconds)
    claimed = epoch(parent["started_at"])
    collect = processes.get(parent["id"])
    return {
        "queue_s": claimed - epoch(parent["created_at"]),
        "plan_s": created - claimed,
        # The plan's parts: claim -> collection process, its life, and history + insert after it.
        "plan_parts": None
        if collect is None
        else [collect[0] - claimed, collect[1] - collect[0], created - collect[1]],
        "settle_s": epoch(parent["finished_at"]) - max(epoch(s["finished_at"]) for s in shards),
        "shards": rows,
        "imbalance": max(seconds) / mean if mean else None,
        "summary_imbalance": (parent["summary"].get("shards") or {}).get("imbalance"),
    }


def traced(
    parent: dict[str, Any], steps: list[dict[str, Any]], *, expected: dict[str, int], collected: list[str]
) -> list[str]:
    """What differs between the sharded run and pytest's own run of the same tests (empty: nothing).

    ``expected``: pytest's closing counts; ``collected``: the node ids pytest --collect-only lists.
    Checked: every collected test has exactly one step (no test lost, none run twice); the parent's
    total is pytest's number of tests; its counts by step status, and pytest's own categories that
    the shards report, are pytest's counts.
    """
    problems = []
    names = Counter(step["name"] for step in steps)
    twice = sorted(name for name, n in names.items() if n > 1)
    missing = sorted(set(collected) - set(names))
    extra = sorted(set(names) - set(collected))
    for what, found in (
        ("ran more than once", twice),
        ("never ran", missing),
        ("not collected by pytest", extra),
    ):
        if found:
            problems.append(
                f"{len(found)} tests {what}: {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}"
            )
    summary = parent["summary"]
    if summary.get("total") != len(collected):
        problems.append(
            f"parent summary total {summary.get('total')} != {len(collected)} tests pytest collected"
        )
    by_status = {k: summary.get(k, 0) for k in CATEGORIES if summary.get(k) or expected.get(k)}
    wanted = {k: expected.get(k, 0) for k in by_status}
    if by_status != wanted:
        problems.append(f"parent summary counts {by_status} != pytest's {wanted}")
    reported = (summary.get("pytest") or {}).get("counts") or {}
    own = {k: v for k, v in reported.items() if k in CATEGORIES}
    if own != {k: v for k, v in expected.items() if v}:
        problems.append(f"the shards' pytest counts {own} != pytest's {expected}")
    return problems


def shard_table(line: dict[str, Any]) -> list[str]:
    """One line per shard: planned against actual, and where its time went."""
    out = [
        "      shard status  tests planned/ran trips stolen planned s actual s |"
        " dispatch  prep  start   tests between  exit record"
    ]
    for r in line["shards"]:
        planned = "-" if r["planned_s"] is None else f"{r['planned_s']:9.2f}"
        out.append(
            f"      {r['index']!s:>5} {r['status']:<7} {r['planned_tests']!s:>6} /{r['ran_tests']:>5}"
            f" {r['trips']:>6} {r['stolen']:>6} {planned:>9} {r['seconds']:8.2f} | {r['dispatch_s']:8.2f}"
            f" {r['prep_s']:5.2f} {r['boot_s']:6.2f} {r['tests_s']:7.2f} {r['between_s']:7.2f}"
            f" {r['exit_s']:5.2f} {r['record_s']:6.2f}"
        )
    return out


# --- what is printed --------------------------------------------------------------------------------

TARGET_VS_XDIST = 0.9  # Anvil's time / pytest -n 2's, at most
TARGET_EFFICIENCY = 0.8  # speed-up / slots, at least
TARGET_IMBALANCE = 1.15  # slowest shard / mean, at most


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_summary(results: dict[str, Any]) -> None:
    m = results["machine"]
    print()
    print(f"Sharding benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  commit {m['commit']}")
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, load average at start "
        f"{m['loadavg']}, Python {m['python']}; the bench took {results['elapsed_s']:.0f} s"
    )
    if "suite" in results:
        print_suite(results["suite"])
    if "scale" in results:
        print_scale(results["scale"])


def _cpu(cpu: dict[str, float]) -> str:
    return " + ".join(f"{v:.1f} {k}" for k, v in cpu.items() if v >= 0.05)


def print_suite(suite: dict[str, Any]) -> None:
    rounds = suite["rounds"]
    counts = ", ".join(f"{v} {k}" for k, v in suite["counts"].items())
    print()
    print(
        f"(1) {suite['project']}: {suite['tests']} tests (args: {' '.join(suite['args'])}); pytest: {counts}"
    )
    print(
        f"    {len(rounds)} rounds of: pytest, pytest -n 2 (xdist), the same tests as an Anvil case with"
        " shards"
        ' "auto"\n    (one worker -c 2: 2 shards), from submit to the final status of the parent'
    )
    print(
        "                    wall s: pytest  -n 2  Anvil | Anvil/(-n 2)  /pytest  slowest/mean"
        " | CPU s: pytest  -n 2  Anvil | others' CPU s"
    )
    labels = {1: "run 1, no history", 3: "run 3, history"}
    for n, r in enumerate(rounds, 1):
        plain, xdist, run = r["pytest"], r["xdist"], r["anvil"]
        ratio = run["wall_s"] / xdist["elapsed_s"]
        imbalance = "-" if run["timeline"] is None else f"{run['timeline']['imbalance']:.3f}"
        target = f" {verdict(ratio <= TARGET_VS_XDIST)}" if n in labels else ""
        print(
            f"    {labels.get(n, f'run {n}'):17} {plain['elapsed_s']:11.2f} {xdist['elapsed_s']:5.2f}"
            f" {run['wall_s']:6.2f} | {ratio:7.3f}{target:7} {run['wall_s'] / plain['elapsed_s']:6.3f}"
            f" {imbalance:>13} | {plain['cpu_s']:12.1f} {xdist['cpu_s']:5.1f}"
            f" {sum(run['cpu_s'].values()):6.1f}"
            f" | {plain['others_cpu_s']:.1f} {xdist['others_cpu_s']:.1f} {run['others_cpu_s']:.1f}"
        )
    medians = {k: statistics.median(r[k]["elapsed_s"] for r in rounds) for k in ("pytest", "xdist")}
    anvil = statistics.median(r["anvil"]["wall_s"] for r in rounds[1:])
    print(
        f"    medians: pytest {medians['pytest']:.2f} s, pytest -n 2 {medians['xdist']:.2f} s,"
        " Anvil with history"
        f" (runs 2+) {anvil:.2f} s = {anvil / medians['xdist']:.3f} x pytest -n 2"
        f" ({verdict(anvil / medians['xdist'] <= TARGET_VS_XDIST)}), {anvil / medians['pytest']:.3f} x pytest"
    )
    print(
        f"    target: Anvil / (pytest -n 2) <= {TARGET_VS_XDIST}. slowest/mean: the slowest shard's claim ->"
        " finish over the mean.\n    CPU s: every process of the run (Anvil: worker, test processes, API,"
        " PostgreSQL, Redis);\n    others' CPU s: what the rest of the machine used meanwhile (other work"
        " on this shared machine)"
    )
    for n, r in enumerate(rounds, 1):
        run, plain, xdist = r["anvil"], r["pytest"], r["xdist"]
        line = run["timeline"]
        if line is None:
            print(f"  Anvil run {n} was not sharded")
            continue
        steal = "?" if run["steal"] is None else f"{run['steal'] * 100:.1f} %"
        tests = sum(row["tests_s"] for row in line["shards"])
        print(
            f"  Anvil run {n}: queue {line['queue_s']:.2f} s, {_plan(line)},"
            f" settle {line['settle_s']:.2f} s;\n"
            f"    CPU s {_cpu(run['cpu_s'])}; steal {steal}; the tests' own times add up to {tests:.1f} s"
            f" (pytest: {plain['tests_s']:.1f} s, pytest -n 2: {xdist['tests_s']:.1f} s)"
        )
        for text_line in shard_table(line):
            print(text_line)
        if run["problems"]:
            print("  !!! NOT EVERY TEST TRACED AS PYTEST COUNTS IT:")
            for problem in run["problems"]:
                print(f"  !!!   {problem}")
        else:
            print(
                f"      traced: each of the {suite['tests']} tests once; the parent's counts are pytest's own"
            )


def print_scale(scale: dict[str, Any]) -> None:
    print()
    print(
        f"(2) scale-out: {scale['tests']} tests sleeping 50-500 ms (seed {scale['seed']}), "
        f"{scale['sleep_s']:.1f} s of sleep in all;\n    each configuration measured after one unmeasured"
        " warm-up run (the plan comes from history)"
    )
    print(
        "    configuration         slots shards  wall s  ideal s  speed-up  /slots >= 0.8"
        "   slowest/mean <= 1.15  CPU s  others' CPU s | pytest -n slots: wall s  /slots  Anvil/it"
    )
    for row in scale["rows"]:
        imbalance = "-"
        if row["imbalance"] is not None:
            imbalance = f"{row['imbalance']:.3f} {verdict(row['imbalance'] <= TARGET_IMBALANCE)}"
        efficiency = f"{row['efficiency']:.3f} {verdict(row['efficiency'] >= TARGET_EFFICIENCY)}"
        if row["slots"] == 1:
            efficiency = "(baseline)"
        print(
            f"    {row['config']:21}{row['slots']:6}{row['shards']:7}{row['wall_s']:8.2f}"
            f"{row['ideal_s']:9.2f}"
            f"{row['speedup']:10.2f}  {efficiency:>13}   {imbalance:>20}"
            f"  {sum(row['cpu_s'].values()):5.1f}  {row['others_cpu_s']:6.1f}" + _pytest_reference(row)
        )
        for problem in row["problems"]:
            print(f"    !!! {row['config']}: {problem}")
    if not any(row["problems"] for row in scale["rows"]):
        print(f"    traced: every measured run ran each of the {scale['tests']} tests once, all passed")
    print(
        "    ideal s: the sleep time over the slots; pytest -n slots: pytest-xdist with one process per"
        " slot (plain pytest for 1),\n    its /slots against the same baseline. Where the time of each"
        " measured run went:"
    )
    for row in scale["rows"]:
        line = row["timeline"]
        if line is None:
            continue
        shards = line["shards"]
        print(
            f"  {row['config']}: queue {line['queue_s']:.2f} s, {_plan(line)}, settle"
            f" {line['settle_s']:.2f} s; dispatch {_span(shards, 'dispatch_s')},"
            f" startup {_span(shards, 'startup_s')},"
            f" between {_span(shards, 'between_s')}, tail {_span(shards, 'tail_s')} s (min-max over shards);"
            f" CPU s {_cpu(row['cpu_s'])}"
        )
        for text_line in shard_table(line):
            print(text_line)


def _pytest_reference(row: dict[str, Any]) -> str:
    reference = row.get("pytest")
    if not reference:  # a result file from before the reference was measured
        return ""
    return (
        f" | {reference['wall_s']:22.2f}  {reference['efficiency']:6.3f}"
        f"  {row['wall_s'] / reference['wall_s']:8.3f}"
    )


def _span(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows]
    return f"{min(values):.2f}-{max(values):.2f}"


def _plan(line: dict[str, Any]) -> str:
    if line["plan_parts"] is None:
        return f"plan {line['plan_s']:.2f} s"
    before, collect, after = line["plan_parts"]
    return (
        f"plan {line['plan_s']:.2f} s ({before:.2f} to start collecting, {collect:.2f} pytest --collect-only,"
        f" {after:.2f} history + plan + insert)"
    )
