"""The webhook sender: a thread of each beat process that POSTs the outbox's due deliveries.

A thread, not a tick sweep: a slow receiver (up to ANVIL_WEBHOOK_TIMEOUT_S per POST) must never
delay retries, timeouts and recovery. Each round takes up to 4 × ANVIL_WEBHOOK_SENDERS due
deliveries (db/webhook_deliveries.take_due, which lets several beats share the work), POSTs them on
that many threads, and records each outcome; a failure is tried again with growing waits for
ANVIL_WEBHOOK_RETRY_HOURS. Every delivery is signed per the Standard Webhooks spec.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

from anvil import metrics
from anvil.domain.webhooks import body, signed_headers
from anvil.settings import Settings, get_settings
from db.secrets import box_for
from db.session import new_session
from db.sql import read_db_now
from db.webhook_deliveries import Due, record_attempt, take_due
from db.webhooks import credentials

log = logging.getLogger("anvil.webhooks")


def send(
    client: httpx.Client, settings: Settings, due: Due, at: datetime
) -> tuple[int | None, int, str | None]:
    """POST one delivery signed as of ``at`` (the database clock when it was taken); (status code
    or None, latency in ms, error text or None)."""
    started = time.monotonic()
    try:
        url, secret = credentials(due.webhook, box_for(settings))
        payload = json.dumps(body(due.format, due.event), separators=(",", ":"))
        headers = signed_headers(secret, str(due.id), at, payload)
        response = client.post(url, content=payload.encode(), headers=headers)
    except Exception as exc:  # a refused connection, a timeout, a secret this key cannot read
        return None, _ms(started), f"{type(exc).__name__}: {exc}"[:500]
    error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:300]}"
    return response.status_code, _ms(started), error


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver_due(settings: Settings, client: httpx.Client, pool: ThreadPoolExecutor) -> int:
    """One round: take, send and record the due deliveries; returns how many were sent."""
    hold = timedelta(seconds=2 * settings.webhook_timeout_s + 30)
    with new_session() as session, session.begin():
        now = read_db_now(session)
        taken = take_due(session, now=now, limit=4 * settings.webhook_senders, hold=hold)
    results = list(pool.map(lambda due: send(client, settings, due, now), taken))
    retry_for = timedelta(hours=settings.webhook_retry_hours)
    for due, (code, latency_ms, error) in zip(taken, results, strict=True):
        with new_session() as session, session.begin():
            status = record_attempt(
                session,
                due.id,
                now=read_db_now(session),
                status_code=code,
                latency_ms=latency_ms,
                error=error,
                retry_for=retry_for,
                first_wait_s=settings.webhook_backoff_s,
            )
        outcome = {"delivered": "delivered", "failed": "failed"}.get(status or "", "retrying")
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        metrics.WEBHOOK_LATENCY.observe(latency_ms / 1000)
        if error:
            log.warning("webhook delivery %s to %s: %s (%s)", due.id, due.url, error, outcome)
    return len(taken)


def run_sender(stop: threading.Event, settings: Settings | None = None) -> None:
    """Send until ``stop`` is set; a round that found nothing waits ANVIL_WEBHOOK_POLL_S."""
    settings = settings or get_settings()
    with (
        httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client,
        ThreadPoolExecutor(settings.webhook_senders, thread_name_prefix="webhook") as pool,
    ):
        while not stop.is_set():
            try:
                sent = deliver_due(settings, client, pool)
            except Exception:  # the database is down: try again after a pause
                log.exception("webhook round failed")
                sent = 0
            if not sent:
                stop.wait(settings.webhook_poll_s)


def start_sender(settings: Settings | None = None) -> threading.Event:
    """Start the sender thread (a daemon: it dies with the beat); set the event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run_sender, args=(stop, settings), name="webhook-sender", daemon=True).start()
    return stop
