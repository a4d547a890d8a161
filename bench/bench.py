"""Anvil benchmark: raw Celery throughput, Anvil end-to-end throughput, submit->RUNNING latency.

    .venv/bin/python bench/bench.py [--n 500] [--latency-samples 200]

One run measures, on this machine, with one worker of concurrency 2 (prefork, Anvil's settings):
  (a) a no-op Celery task (bench/noop.py) on Anvil's broker and worker settings, counted in Redis:
      once with task events off (how Anvil's workers start), once with them on (`-E`, how
      Flower's enable_events broadcast leaves a worker);
  (b) trivial Anvil executions (a generic case with one step running `true`) submitted through the
      API from a few threads, from the first submit until the last one is PASSED in PostgreSQL:
      once with one request per execution (POST /executions/case), once in batches (POST
      /executions/batch, --batch items per request), and once more in batches after broadcasting
      enable_events to the worker, as Flower does while it runs ("watched");
  (c) submit->RUNNING latency with an idle worker (task events off), one submission at a time.
It uses a database of its own (created, migrated, dropped) and an empty Redis DB (flushed at the
end), so it never touches other data; every process it starts is stopped, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
# The raw worker imports bench.noop from the repository root; so does this process.
sys.path.insert(0, str(ROOT))

from anvil.cli.bootstrap import free_port  # noqa: E402
from bench.cpu import CpuMeter, with_descendants  # noqa: E402
from bench.report import machine_info, report  # noqa: E402
from bench.waits import passed, status_of, wait_until  # noqa: E402

CONCURRENCY = 2


@dataclass
class Bench:
    """What one run created, so that cleanup can remove exactly that."""

    pg_admin: str
    redis_url: str
    dbname: str = field(default_factory=lambda: f"anvil_bench_{uuid.uuid4().hex[:8]}")
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="anvil-bench-")))
    children: list[Any] = field(default_factory=list)
    db_created: bool = False
    redis_used: bool = False

    @property
    def database_url(self) -> str:
        base = self.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{self.dbname}"

    @property
    def logs(self) -> Path:
        return self.tmp / "logs"

    def admin_sql(self, sql: str) -> None:
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(sql)

    def pg_backends(self) -> list[int]:
        """PostgreSQL server processes serving the bench database (same host)."""
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.dbname])
            return [int(pid) for (pid,) in rows]

    def meter(self, **roots: int) -> CpuMeter:
        """CPU meter for the given process trees, this process, the bench database's backends
        and, when it runs on this host, the Redis server (shared with whatever else uses it)."""
        groups: dict[str, Callable[[], list[int]]] = {
            name: (lambda pid=pid: with_descendants(pid)) for name, pid in roots.items()
        }
        groups["postgres"] = self.pg_backends
        client = redis.Redis.from_url(self.redis_url)
        if client.connection_pool.connection_kwargs.get("host") in ("127.0.0.1", "localhost"):
            redis_pid = int(client.info("server")["process_id"])
            groups["redis"] = lambda: [redis_pid]
        groups["bench"] = lambda: [os.getpid()]
        return CpuMeter(groups)

    def cleanup(self, *, keep_logs: bool) -> None:
        for child in reversed(self.children):
            try:
                child.stop(timeout=10)
            except Exception:
                child.kill()
        self.children.clear()
        if self.db_created:
            from db.session import _engines

            for engine in _engines.values():
                engine.dispose()
            self.admin_sql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        if self.redis_used:
            redis.Redis.from_url(self.redis_url).flushdb()
        if keep_logs and self.logs.exists():
            print(f"logs kept in {self.logs}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    args = parse_args()
    bench = Bench(pg_admin=args.pg_admin, redis_url=args.redis_url)
    signal.signal(signal.SIGTERM, _interrupt)
    machine = machine_info()  # the load average before this run adds its own
    status = 1
    try:
        setup(bench)
        raw = measure_raw_celery(bench, n=args.n, warmup=args.warmup, events=False)
        raw_events = measure_raw_celery(bench, n=args.n, warmup=args.warmup, events=True)
        api_url, token, case_id = start_anvil(bench)
        load = {"n": args.n, "threads": args.threads, "warmup": args.warmup}
        anvil = measure_anvil(bench, api_url, token, case_id, batch=1, **load)
        batched = measure_anvil(bench, api_url, token, case_id, batch=args.batch, **load)
        latency = measure_latency(bench, api_url, token, case_id, samples=args.latency_samples)
        # Last: nothing turns task events off again but a disable_events broadcast or a restart.
        enable_task_events()
        watched = measure_anvil(bench, api_url, token, case_id, batch=args.batch, **load)
        results = report(
            args,
            machine=machine,
            concurrency=CONCURRENCY,
            raw=raw,
            raw_events=raw_events,
            anvil=anvil,
            batched=batched,
            watched=watched,
            latency=latency,
        )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        status = 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        status = 130
    finally:
        # A failed run keeps the processes' logs for a look.
        bench.cleanup(keep_logs=status == 1 or args.keep_logs)
    return status


def _interrupt(_signum: int, _frame: object) -> None:
    # Ctrl-C arrives as KeyboardInterrupt; SIGTERM does the same, so cleanup runs either way.
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="tasks / executions for (a) and (b)")
    parser.add_argument("--latency-samples", type=int, default=200, help="sequential submissions for (c)")
    parser.add_argument("--threads", type=int, default=4, help="submitting threads for (b)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="tasks / executions run, unmeasured, before each of (a) and (b)",
    )
    parser.add_argument("--batch", type=int, default=50, help="executions per request in batched (b)")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("ANVIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL allowed to create and drop the bench database",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ANVIL_BENCH_REDIS", "redis://127.0.0.1:6379/8"),
        help="an EMPTY Redis DB for the broker (the tests use DBs 9-15); flushed at the end",
    )
    parser.add_argument("--json", type=Path, help="also write the results here (e.g. bench/results/x.json)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    if min(args.n, args.latency_samples, args.threads) < 1 or not 1 <= args.batch <= 500:
        parser.error("--n, --latency-samples and --threads must be positive, --batch 1 to 500")
    return args


def setup(bench: Bench) -> None:
    """Fresh database and Redis DB; the environment every Anvil module and child process reads."""
    client = redis.Redis.from_url(bench.redis_url)
    if client.dbsize():
        raise SystemExit(f"{bench.redis_url} is not empty; give an unused DB with --redis-url")
    bench.redis_used = True
    (bench.tmp / "workspaces" / "bench").mkdir(parents=True)
    bench.logs.mkdir()
    os.environ.update(
        ANVIL_DATABASE_URL=bench.database_url,
        ANVIL_REDIS_URL=bench.redis_url,
        ANVIL_SECRET_KEY=secrets.token_hex(32),
        ANVIL_WORKSPACE_ROOT=str(bench.tmp / "workspaces"),
        ANVIL_WORKER_CONCURRENCY=str(CONCURRENCY),
        ANVIL_LOG_LEVEL="INFO",
    )
    from anvil.migrate import upgrade
    from anvil.settings import get_settings

    get_settings.cache_clear()
    bench.admin_sql(f'CREATE DATABASE "{bench.dbname}"')
    bench.db_created = True
    upgrade(bench.database_url)


def measure_raw_celery(bench: Bench, *, n: int, warmup: int, events: bool) -> dict[str, Any]:
    """(a): seconds from the first publish until the no-op task has run ``n`` times, and CPU.

    ``events``: the worker sends task events from the start (`-E`), as one does once Flower's
    enable_events broadcast reached it; else it starts as Anvil's workers do, without them.
    """
    from anvil.cli.processes import Child, wait_log
    from anvil.domain.enums import QUEUES
    from bench.noop import NOOP_TASK, app

    log = bench.logs / ("celery-noop-events.log" if events else "celery-noop.log")
    # The same options `anvil worker` gives Celery (anvil/cli/servers.py).
    argv = [sys.executable, "-m", "celery", "-A", "bench.noop", "worker", "-Q", ",".join(QUEUES)]
    argv += ["-c", str(CONCURRENCY), "-l", "INFO", "-O", "fair", "--without-gossip", "--without-mingle"]
    argv += ["-n", f"bench-noop-{uuid.uuid4().hex[:6]}@%h"] + (["-E"] if events else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = Child("celery-noop", proc, log)
    bench.children.append(worker)
    wait_log(worker, "ready.", timeout=60)
    client = redis.Redis.from_url(bench.redis_url)

    def run(count: int, key: str) -> float:
        started = time.perf_counter()
        for _ in range(count):
            app.send_task(NOOP_TASK, args=[key], queue="normal", routing_key="normal", retry=True)
        wait_until(lambda: int(client.get(key) or 0) >= count, timeout=60 + count, interval=0.005)
        return time.perf_counter() - started

    run(warmup, "bench:warmup")  # connections, pool processes, imports
    meter = bench.meter(worker=worker.pid)
    meter.start()
    elapsed = run(n, "bench:done")
    cpu = meter.stop()
    worker.stop()
    bench.children.remove(worker)
    client.flushdb()
    return {"elapsed_s": elapsed, "cpu_s": cpu, "steal": meter.stolen, "task_events": events}


def enable_task_events() -> None:
    """What Flower broadcasts every 5 s while it runs; the one worker running now must answer."""
    from bench.noop import app

    replies = app.control.enable_events(reply=True, timeout=5)
    if [next(iter(reply.values())) for reply in replies] != [{"ok": "task events enabled"}]:
        raise RuntimeError(f"enable_events: expected the Anvil worker to enable them, got {replies}")


def start_anvil(bench: Bench) -> tuple[str, str, str]:
    """`anvil api` and one `anvil worker -c 2`; an admin token and the trivial case."""
    from anvil.cli.processes import spawn, wait_http, wait_log
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.session import new_session
    from db.users import create_user

    port = free_port()
    api = spawn("api", ["api", "--port", str(port)], log=bench.logs / "api.log")
    bench.children.append(api)
    worker = spawn(
        "worker",
        ["worker", "-c", str(CONCURRENCY), "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        log=bench.logs / "worker.log",
    )
    bench.children.append(worker)
    api_url = f"http://127.0.0.1:{port}"
    wait_http(f"{api_url}/readyz", timeout=60, child=api)
    wait_log(worker, "ready.", timeout=60)

    with new_session() as session, session.begin():
        user = create_user(session, username="bench", password=secrets.token_hex(16), role=Role.ADMIN)
    token = issue_token(get_settings(), user_id=user.id, username=user.username, role=user.role)
    case = {
        "name": "bench-true",
        "kind": "generic",
        "spec": {"workspace": "bench", "steps": [{"name": "true", "run": ["true"]}]},
        "timeout_s": 60,
    }
    response = httpx.post(f"{api_url}/api/v1/test-cases", json=case, headers=auth(token), timeout=30)
    response.raise_for_status()
    return api_url, token, response.json()["id"]


def measure_anvil(
    bench: Bench, api_url: str, token: str, case_id: str, *, n: int, threads: int, batch: int, warmup: int
) -> dict[str, Any]:
    """(b): seconds from the first submit until ``n`` executions are PASSED, and where they went.

    ``batch`` 1: one POST /executions/case per execution; more: POST /executions/batch with that
    many items. The end is the last ``finished_at`` (PostgreSQL's clock; the same host's clock).
    """
    from sqlalchemy import text

    from db.session import new_session

    local = threading.local()
    clients: list[httpx.Client] = []

    def submit(run_id: str, size: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=api_url, headers=auth(token), timeout=30)
            clients.append(client)
        item = {"test_case_id": case_id, "run_id": run_id}
        if batch == 1:
            response = client.post("/api/v1/executions/case", json=item)
        else:
            response = client.post("/api/v1/executions/batch", json={"items": [item] * size})
        if response.status_code != 201:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")

    def run(count: int, run_id: str) -> tuple[float, float]:
        sizes = [min(batch, count - start) for start in range(0, count, batch)]
        started = time.time()
        pool = ThreadPoolExecutor(threads)
        try:
            for future in [pool.submit(submit, run_id, size) for size in sizes]:
                future.result()
        finally:
            # On Ctrl-C or a failed submit, drop the submissions not yet sent.
            pool.shutdown(cancel_futures=True)
        submitted = time.time() - started
        # Polled slowly (this process shares the CPUs); the end is read from the rows themselves.
        wait_until(lambda: passed(run_id, count), timeout=120 + count, interval=0.2)
        with new_session() as session:
            last = session.execute(
                text("SELECT EXTRACT(EPOCH FROM max(finished_at)) FROM executions WHERE run_id = :r"),
                {"r": run_id},
            ).scalar_one()
        return float(last) - started, submitted

    api, worker = (next(c for c in bench.children if c.name == name) for name in ("api", "worker"))
    try:
        # Run ids of their own: a phase must never count executions of an earlier one as its own.
        phase = uuid.uuid4().hex[:8]
        run(warmup, f"bench-warmup-{batch}-{phase}")
        meter = bench.meter(worker=worker.pid, api=api.pid)
        meter.start()
        elapsed, submitted = run(n, f"bench-throughput-{batch}-{phase}")
        cpu = meter.stop()
    finally:
        for client in clients:
            client.close()
    with new_session() as session:
        # Worker time per execution: from the claim (started_at) to the final status (finished_at).
        worker_ms = session.execute(
            text(
                "SELECT avg(EXTRACT(EPOCH FROM (finished_at - started_at))) * 1000 FROM executions"
                " WHERE run_id = :run_id"
            ),
            {"run_id": f"bench-throughput-{batch}-{phase}"},
        ).scalar_one()
    return {
        "elapsed_s": elapsed,
        "submit_s": submitted,
        "worker_ms_mean": float(worker_ms),
        "cpu_s": cpu,
        "steal": meter.stolen,
        "batch": batch,
    }


def measure_latency(bench: Bench, api_url: str, token: str, case_id: str, *, samples: int) -> dict[str, Any]:
    """(c): started_at - created_at of sequential submissions to an idle worker, and the POST round trip."""
    from sqlalchemy import text

    from db.session import new_session

    round_trips: list[float] = []
    with httpx.Client(base_url=api_url, headers=auth(token), timeout=30) as client:
        for _ in range(samples):
            began = time.perf_counter()
            response = client.post(
                "/api/v1/executions/case", json={"test_case_id": case_id, "run_id": "bench-latency"}
            )
            round_trips.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            execution_id = response.json()["id"]
            # Wait until it is done, so the next one meets an idle worker again.
            wait_until(lambda eid=execution_id: status_of(eid) == "PASSED", timeout=30, interval=0.005)
    with new_session() as session:
        rows = session.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM (started_at - created_at)) * 1000 FROM executions"
                " WHERE run_id = 'bench-latency'"
            )
        ).scalars()
        latencies = [float(v) for v in rows]
    return {"submit_to_running_ms": latencies, "post_round_trip_ms": round_trips}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


if __name__ == "__main__":
    sys.exit(main())
