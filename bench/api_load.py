"""Anvil API under load: many concurrent clients against one real `anvil api` process.

    .venv/bin/python bench/api_load.py [--clients 500] [--duration 60]

For --duration seconds, --clients concurrent HTTP clients (httpx, asyncio, one connection each):
  --streams (200) follow an execution's live events (GET .../events) and keep the stream open
  (they are opened first, all at once; the measured window starts when every one is open);
  --logins (5) post wrong passwords to POST /api/v1/auth/token, each every 0 to 2 x --login-think
  seconds (a wrong password costs the API one argon2 check: about 150 ms of CPU here);
  the others read (GET /executions, /executions/{id}, /executions/{id}/steps) and submit
  (POST /executions/case of an existing case: --submit-share of their actions), each action
  followed by a random think time (0 to twice --think seconds).
No worker runs, so executions stay QUEUED and their streams stay open and idle: the API, its
connection pool and PostgreSQL are what is measured. The run prints requests by kind, 5xx (target
0), failed requests (no answer), latency percentiles of reads and submissions (target p99 <= 1 s
on the 2-core machine), and the CPU time of the API, PostgreSQL, Redis and this process.

Isolation as bench/bench.py: a database of its own (created, migrated, dropped), an EMPTY Redis DB
(default 7, flushed at the end), the API on a free loopback port; every process it starts is
stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import ssl
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from anvil.cli.bootstrap import free_port  # noqa: E402
from bench.bench import Bench, auth, setup  # noqa: E402
from bench.report import machine_info, percentile  # noqa: E402

READS = ("list", "get", "steps")
P99_TARGET_MS = 1000.0


@dataclass
class Tally:
    """Outcomes and latencies (ms) by kind of request."""

    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: Counter[str] = field(default_factory=Counter)  # no answer: connection error, timeout
    streams_dropped: int = 0  # streams that ended or broke before the run did

    def record(self, kind: str, status: int, started: float) -> None:
        self.statuses[kind][status] += 1
        self.latency_ms[kind].append((time.perf_counter() - started) * 1000)


def main() -> int:
    args = parse_args()
    bench = Bench(pg_admin=args.pg_admin, redis_url=args.redis_url)
    signal.signal(signal.SIGTERM, _interrupt)
    machine = machine_info()
    status = 1
    try:
        setup(bench)
        api_url, token, case_id, api_pid = start_api(bench, workers=args.api_workers)
        executions = seed(api_url, token, case_id, count=max(args.streams, 50))
        meter = bench.meter(api=api_pid)
        meter.start()
        tally = run_loop(load(args, api_url, token, case_id, executions))
        cpu = meter.stop()
        results = report(args, machine=machine, tally=tally, cpu=cpu, steal=meter.stolen)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        status = 0 if results["ok"] else 3
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        status = 130
    finally:
        bench.cleanup(keep_logs=status in (1, 3) or args.keep_logs)
    return status


def run_loop(main: Awaitable[Tally]) -> Tally:
    """uvloop where installed (uvicorn[standard] brings it): the clients cost less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=500, help="concurrent clients, streams included")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--streams", type=int, default=200, help="clients holding an event stream open")
    parser.add_argument("--logins", type=int, default=5, help="clients posting wrong passwords")
    parser.add_argument("--login-think", type=float, default=5.0, help="their mean pause, seconds")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause after each action, seconds")
    parser.add_argument("--submit-share", type=float, default=0.1, help="share of actions that submit")
    parser.add_argument("--api-workers", type=int, default=1, help="`anvil api --workers`")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("ANVIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL allowed to create and drop the bench database",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ANVIL_BENCH_API_REDIS", "redis://127.0.0.1:6379/7"),
        help="an EMPTY Redis DB (bench.py uses 8, the tests 9-15); flushed at the end",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the API's log")
    args = parser.parse_args()
    if args.streams + args.logins >= args.clients:
        parser.error("--clients must leave some clients for reads and submissions")
    if min(args.streams, args.logins, args.think, args.login_think) < 0 or args.duration <= 0:
        parser.error("--duration must be positive; --streams, --logins and the pauses not negative")
    if not 0 <= args.submit_share <= 1:
        parser.error("--submit-share is a share: 0 to 1")
    return args


def start_api(bench: Bench, *, workers: int) -> tuple[str, str, str, int]:
    """`anvil api` on a free loopback port; an admin token and a trivial case."""
    import secrets

    from anvil.cli.processes import spawn, wait_http
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.session import new_session
    from db.users import create_user

    port = free_port()
    argv = ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    api = spawn("api", argv, log=bench.logs / "api.log")
    bench.children.append(api)
    api_url = f"http://127.0.0.1:{port}"
    wait_http(f"{api_url}/readyz", timeout=60, child=api)
    with new_session() as session, session.begin():
        user = create_user(session, username="bench-admin", password=secrets.token_hex(16), role=Role.ADMIN)
    token = issue_token(get_settings(), user_id=user.id, username=user.username, role=user.role)
    case = {
        "name": "bench-true",
        "kind": "generic",
        "spec": {"workspace": "bench", "steps": [{"name": "true", "run": ["true"]}]},
        "timeout_s": 60,
    }
    response = httpx.post(f"{api_url}/api/v1/test-cases", json=case, headers=auth(token), timeout=30)
    response.raise_for_status()
    return api_url, token, response.json()["id"], api.pid


def seed(api_url: str, token: str, case_id: str, *, count: int) -> list[str]:
    """Executions to read and to follow (they stay QUEUED: no worker runs)."""
    ids: list[str] = []
    with httpx.Client(base_url=api_url, headers=auth(token), timeout=60) as client:
        while len(ids) < count:
            size = min(100, count - len(ids))
            items = [{"test_case_id": case_id, "run_id": "api-load-seed"}] * size
            response = client.post("/api/v1/executions/batch", json={"items": items})
            response.raise_for_status()
            ids += [item["id"] for item in response.json()["items"]]
    return ids


async def load(
    args: argparse.Namespace, api_url: str, token: str, case_id: str, executions: list[str]
) -> Tally:
    tally = Tally()
    headers = auth(token)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    end = time.monotonic() + 3600  # set once the streams are open
    started_streams: list[None] = []
    all_open, window = asyncio.Event(), asyncio.Event()
    rng = random.Random(20261201)

    async def pause(seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, end - time.monotonic())))

    def stream_started() -> None:
        started_streams.append(None)
        if len(started_streams) == args.streams:
            all_open.set()

    async def stream(client: httpx.AsyncClient, execution_id: str) -> None:
        started = time.perf_counter()
        path = f"/api/v1/executions/{execution_id}/events"
        try:
            async with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(30, read=60)) as r:
                first = r.aiter_bytes()
                if r.status_code == 200:
                    await anext(first)  # the stream is being served: "retry:" came
                tally.record("stream", r.status_code, started)
                stream_started()
                if r.status_code != 200:
                    return
                await window.wait()
                while time.monotonic() < end:  # keep-alives every 15 s; nothing else (no worker)
                    try:
                        await asyncio.wait_for(anext(first), timeout=max(0.01, end - time.monotonic()))
                    except TimeoutError:
                        return
                    except StopAsyncIteration:
                        tally.streams_dropped += 1
                        return
        except httpx.HTTPError:
            if not all_open.is_set():
                stream_started()
            if time.monotonic() < end:
                tally.failed["stream"] += 1

    async def request(client: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any) -> None:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kw)
        except httpx.HTTPError:
            tally.failed[kind] += 1
            return
        tally.record(kind, response.status_code, started)

    async def user(client: httpx.AsyncClient, n: int) -> None:
        own = random.Random(n)
        await pause(own.uniform(0, 2 * args.think))  # spread the first requests
        while time.monotonic() < end:
            if own.random() < args.submit_share:
                body = {"test_case_id": case_id, "run_id": "api-load"}
                await request(client, "submit", "POST", "/api/v1/executions/case", json=body, headers=headers)
            else:
                kind = own.choice(READS)
                execution_id = own.choice(executions)
                path = {
                    "list": "/api/v1/executions?limit=20",
                    "get": f"/api/v1/executions/{execution_id}",
                    "steps": f"/api/v1/executions/{execution_id}/steps",
                }[kind]
                await request(client, kind, "GET", path, headers=headers)
            await pause(own.uniform(0, 2 * args.think))

    async def wrong_login(client: httpx.AsyncClient, n: int) -> None:
        own = random.Random(-n - 1)
        await pause(own.uniform(0, 2 * args.login_think))
        while time.monotonic() < end:
            form = {"username": f"bench-guess-{n}", "password": "not-the-password"}
            await request(client, "login", "POST", "/api/v1/auth/token", data=form)
            await pause(own.uniform(0, 2 * args.login_think))

    # A client (one connection) per simulated client: one pool shared by hundreds of connections
    # costs the benchmark more CPU per request than the API spends. No TLS: one context for all.
    tls = ssl.create_default_context()

    async def client_of(role: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
        async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=30, verify=tls) as client:
            await role(client)

    # First the streams, all at once; once every one is open (or failed), the measured window
    # starts and the other clients join, each after a random first pause.
    followed = [executions[i % len(executions)] for i in range(args.streams)]
    streams = [asyncio.create_task(client_of(partial(stream, execution_id=e))) for e in followed]
    if not streams:
        all_open.set()
    await all_open.wait()
    end = time.monotonic() + args.duration
    window.set()
    roles = [partial(wrong_login, n=n) for n in range(args.logins)]
    users = args.clients - args.streams - args.logins
    roles += [partial(user, n=rng.randrange(2**31)) for _ in range(users)]
    await asyncio.gather(*streams, *(client_of(role) for role in roles))
    return tally


def report(
    args: argparse.Namespace,
    *,
    machine: dict[str, Any],
    tally: Tally,
    cpu: dict[str, float],
    steal: float | None,
) -> dict[str, Any]:
    users = args.clients - args.streams - args.logins
    groups = {
        "reads": list(READS),
        "submits": ["submit"],
        "wrong logins": ["login"],
        "stream opens": ["stream"],
    }
    print(f"Anvil API load  {time.strftime('%Y-%m-%d %H:%M:%S')}  commit {machine['commit']}")
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
        f"load average at start {machine['loadavg']}, Python {machine['python']}"
    )
    print(
        f"{args.clients} clients for {args.duration:g} s: {args.streams} open event streams, {args.logins}"
        f" posting wrong passwords (pause 0-{2 * args.login_think:g} s), {users} reading and submitting"
        f" ({args.submit_share:.0%} submissions, pause 0-{2 * args.think:g} s);"
        f" `anvil api --workers {args.api_workers}`, no worker"
    )
    print()
    print(f"{'':14}{'requests':>9}{'per s':>8}{'2xx':>8}{'4xx':>7}{'5xx':>6}{'failed':>7}"
          f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")  # fmt: skip
    figures: dict[str, Any] = {}
    for label, kinds in groups.items():
        statuses = sum((tally.statuses[k] for k in kinds), Counter())
        lat = [v for k in kinds for v in tally.latency_ms[k]]
        failed = sum(tally.failed[k] for k in kinds)
        count = sum(statuses.values())
        by_class = {c: sum(n for s, n in statuses.items() if s // 100 == c) for c in (2, 4, 5)}
        pct = {p: percentile(lat, p) if lat else 0.0 for p in (50, 95, 99, 100)}
        rate = f"{count / args.duration:8.1f}" if label != "stream opens" else f"{'-':>8}"  # before
        print(
            f"{label:14}{count:9d}{rate}{by_class[2]:8d}{by_class[4]:7d}"
            f"{by_class[5]:6d}{failed:7d}{pct[50]:9.1f}{pct[95]:9.1f}{pct[99]:9.1f}{pct[100]:9.1f}"
        )
        figures[label] = {
            "requests": count,
            "statuses": dict(statuses),
            "failed": failed,
            **{f"p{p}_ms": round(v, 1) for p, v in pct.items() if p != 100},
            "max_ms": round(pct[100], 1),
        }
    server_errors = sum(n for c in tally.statuses.values() for s, n in c.items() if s >= 500)
    failed = sum(tally.failed.values()) + tally.streams_dropped
    p99_reads, p99_submits = figures["reads"]["p99_ms"], figures["submits"]["p99_ms"]
    print()
    clean = not server_errors and not failed
    fast = max(p99_reads, p99_submits) <= P99_TARGET_MS
    print(f"5xx: {server_errors}   failed or dropped: {failed}   (target 0: {_verdict(clean)})")
    print(
        f"p99 reads {p99_reads:.0f} ms, submits {p99_submits:.0f} ms"
        f"   (target <= {P99_TARGET_MS:.0f} ms: {_verdict(fast)})"
    )
    answered = sum(sum(c.values()) for c in tally.statuses.values())
    api_ms = cpu.get("api", 0.0) * 1000 / max(1, answered)
    print(
        f"API CPU per answered request: {api_ms:.2f} ms"
        " (less sensitive to other load on the machine than the latencies)"
    )
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        "CPU seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + f"   (of {machine['nproc'] * args.duration:.0f} on {machine['nproc']} CPUs; steal "
        + ("?" if steal is None else f"{steal * 100:.1f}%") + ")"
    )
    print(f"load average at the end {load_after} (at the start: {machine['loadavg']})")
    return {
        "machine": machine,
        "clients": args.clients,
        "duration_s": args.duration,
        "streams": args.streams,
        "logins": args.logins,
        "think_s": args.think,
        "login_think_s": args.login_think,
        "submit_share": args.submit_share,
        "api_workers": args.api_workers,
        "figures": figures,
        "server_errors": server_errors,
        "failed": failed,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "api_cpu_ms_per_request": round(api_ms, 2),
        "steal": steal,
        "loadavg_after": load_after,
        "ok": clean and fast,
    }


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
