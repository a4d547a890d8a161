"""Anvil's Prometheus metrics: every metric a process records, defined once, all named ``anvil_…``.

Each process counts what it did itself: the API its requests, submissions and streamed events; a
worker its claims and results; the beat its ticks and what they changed. Prometheus adds them up
across processes and hosts. What the database knows (queue depth, executions per status, worker
slots) is read at scrape time by the API only (api/db_metrics.py), so it is never counted twice.

The served processes (``anvil api|worker|beat``) write these in multiprocess mode
(anvil/metrics_export.py prepares the directory before this module is imported), so the API's
uvicorn workers and a worker's prefork pool children are summed into one scrape.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds, from a fast API answer to a slow one.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds an execution waits or runs: from a claim within a tick to a nightly backlog of hours.
WAIT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0)
RUN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "anvil_http_requests_total",
    "HTTP requests answered by the API, by route template (not the raw path), method and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "anvil_http_request_duration_seconds",
    "Time from a request's arrival to its response's headers, by route template and method.",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)

EXECUTIONS_CREATED = Counter(
    "anvil_executions_created_total",
    "Executions created (committed), by kind (generic, bdd, manual, pytest, suite), first status "
    "and trigger kind.",
    ["kind", "status", "trigger_kind"],
)
EXECUTIONS_FINISHED = Counter(
    "anvil_executions_finished_total",
    "Executions that reached a final status (committed), by kind, status and trigger kind.",
    ["kind", "status", "trigger_kind"],
)
RETRIES_SCHEDULED = Counter(
    "anvil_retries_scheduled_total",
    "Retries created for failed attempts (new executions of trigger kind retry).",
)
QUEUE_WAIT = Histogram(
    "anvil_execution_queue_wait_seconds",
    "Time an execution waited QUEUED before a worker claimed it, by priority.",
    ["priority"],
    buckets=WAIT_BUCKETS,
)
RUN_TIME = Histogram(
    "anvil_execution_run_seconds",
    "Time from a worker's claim to the execution's final status, by priority.",
    ["priority"],
    buckets=RUN_BUCKETS,
)

TICK_DURATION = Histogram(
    "anvil_tick_duration_seconds",
    "Duration of the scheduler's ticks; leader=true for the beat that held the tick lease and acted.",
    ["leader"],
    buckets=TICK_BUCKETS,
)
TICK_FAILURES = Counter("anvil_tick_failures_total", "Scheduler ticks that failed (e.g. database down).")
LEASE_RECOVERIES = Counter(
    "anvil_lease_recoveries_total",
    "RUNNING executions whose worker stopped renewing the lease: requeued, or finished (lost) "
    "as TIMEOUT or ABORTED.",
    ["outcome"],
)
REPUBLISHED = Counter(
    "anvil_republished_total", "QUEUED executions published again because their message was missing."
)
SCHEDULES_FIRED = Counter("anvil_schedules_fired_total", "Schedules that fired a slot.")
PROMOTED = Counter(
    "anvil_scheduled_promoted_total", "SCHEDULED executions (retry backoff, delayed runs) queued when due."
)

EVENTS_STREAMED = Counter(
    "anvil_events_streamed_total",
    "Live events sent to Server-Sent Events clients, by type (transition, step, end).",
    ["type"],
)

WEBHOOK_ATTEMPTS = Counter(
    "anvil_webhook_attempts_total",
    "Webhook POSTs by outcome: delivered (2xx), retrying (will be tried again), failed (gave up).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "anvil_webhook_latency_seconds",
    "Time a webhook receiver took to answer.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
