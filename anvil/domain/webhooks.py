"""Webhooks: which events a subscription hears, when a delivery is tried again, and what is sent.

Pure functions; db/webhooks.py writes the outbox, scheduler/deliveries.py sends it. A delivery's
body is one of three formats: ``standard`` (the event as JSON, ``{"type", "timestamp", "data"}``, as
the Standard Webhooks spec describes), ``slack`` and ``teams`` (a readable message for an incoming
webhook of that chat). Every delivery is signed the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), whatever its format.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

EXECUTION_FINISHED = "execution.finished"
FLAKY_DETECTED = "test.flaky_detected"
QUARANTINE_CHANGED = "test.quarantine_changed"
TEST_EVENT = "webhook.test"  # "send test event": only to the subscription it was asked for
EVENTS = (EXECUTION_FINISHED, FLAKY_DETECTED, QUARANTINE_CHANGED)
FORMATS = ("standard", "slack", "teams")

# A run's outcome compared with the previous run of the same case or suite on the same branch.
NEWLY_FAILING, FIXED, STILL_FAILING, STILL_PASSING, FIRST = (
    "newly_failing",
    "fixed",
    "still_failing",
    "still_passing",
    "first",
)
CHANGES = (NEWLY_FAILING, FIXED)
OK_STATUSES = frozenset({"PASSED", "SKIPPED"})

# Waits before the 2nd, 3rd, ... attempt, in units of the first wait (ANVIL_WEBHOOK_BACKOFF_S, 5 s:
# 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h), then every 3 h until the retry window closes.
BACKOFF = (1, 6, 24, 120, 360, 720, 2160)
NAMES_SHOWN = 10  # failing tests named in a chat message


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def redacted(url: str) -> str:
    """A URL to show: scheme, host and port; the path, query and any user info (which may hold a
    chat's token) hidden."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/" + ("…" if parts.path.strip("/") or parts.query else "")


def change(status: str, previous_status: str | None) -> str:
    if previous_status is None:  # a first run that fails is newly failing too
        return FIRST if status in OK_STATUSES else NEWLY_FAILING
    now_ok, before_ok = status in OK_STATUSES, previous_status in OK_STATUSES
    if now_ok == before_ok:
        return STILL_PASSING if now_ok else STILL_FAILING
    return FIXED if now_ok else NEWLY_FAILING


def matches(filters: Mapping[str, Any], event_type: str, data: Mapping[str, Any]) -> bool:
    """Whether a subscription's ``filters`` let this event through. Filters narrow only
    ``execution.finished`` (and the case filter the test events); an empty filter lets all through."""
    cases = set(filters.get("case_ids") or ())
    if event_type == EXECUTION_FINISHED:
        suites, schedules = set(filters.get("suite_ids") or ()), set(filters.get("schedule_ids") or ())
        if cases or suites:
            if data.get("test_case_id") not in cases and data.get("test_suite_id") not in suites:
                return False
        if schedules and data.get("schedule_id") not in schedules:
            return False
        statuses = filters.get("statuses") or ()
        if statuses and data.get("status") not in statuses:
            return False
        return not filters.get("only_changes") or data.get("change") in CHANGES
    if event_type in (FLAKY_DETECTED, QUARANTINE_CHANGED) and cases:
        return data.get("test_case_id") in cases
    return True


def next_attempt(
    created_at: datetime, attempts: int, now: datetime, retry_for: timedelta, first_wait_s: float = 5.0
) -> datetime | None:
    """When to try a delivery again after ``attempts`` failed tries; None once the window is over."""
    wait = first_wait_s * BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    at = now + timedelta(seconds=wait)
    return at if at <= created_at + retry_for else None


def signed_headers(secret: str, delivery_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery (the receiver verifies them with the secret)."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, at, body),
        "content-type": "application/json",
        "user-agent": "Anvil-Webhooks",
    }


def envelope(event_type: str, at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": at.isoformat(), "data": dict(data)}


def body(fmt: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """What is POSTed for ``event`` (an envelope) to a subscription of format ``fmt``."""
    if fmt == "standard":
        return dict(event)
    title, lines, link = summary(event)
    if fmt == "slack":
        text = "\n".join([f"*{title}*", *lines, *([f"<{link}|Open in Anvil>"] if link else [])])
        return {"text": text}
    # Microsoft Teams incoming webhook: a MessageCard, which every Teams connector still accepts.
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "themeColor": _colour(event),
        "title": title,
        "text": "<br>".join(lines),
    }
    if link:
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open in Anvil", "targets": [{"os": "default", "uri": link}]}
        ]
    return card


def summary(event: Mapping[str, Any]) -> tuple[str, list[str], str | None]:
    """A chat message's title, lines and link for an event."""
    kind, data = event["type"], event["data"]
    if kind == EXECUTION_FINISHED:
        return _finished(data)
    if kind == FLAKY_DETECTED:
        evidence = "; ".join(data.get("evidence") or []) or "passed and failed in the window"
        lines = [f"Test `{data['test_name']}` of case {data.get('case_name') or '?'}: {evidence}"]
        return f"Flaky test detected: {data['test_name']}", lines, data.get("url")
    if kind == QUARANTINE_CHANGED:
        who = data.get("actor") or "?"
        line = f"Test `{data['test_name']}` {data['action']} by {who}"
        if data.get("reason"):
            line += f": {data['reason']}"
        return f"Quarantine: {data['test_name']} {data['action']}", [line], data.get("url")
    return "Anvil test event", [data.get("message") or "This subscription works."], None


def _finished(data: Mapping[str, Any]) -> tuple[str, list[str], str | None]:
    what = f"{'Suite' if data.get('kind') == 'suite' else 'Case'} {data.get('name')}"
    change_text = {NEWLY_FAILING: " (newly failing)", FIXED: " (fixed)"}.get(data.get("change") or "", "")
    title = f"{what}: {data['status']}{change_text}"
    counts = data.get("counts") or {}
    lines = []
    if counts.get("tests"):
        parts = [
            f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped") if counts.get(k)
        ]
        lines.append(f"{counts['tests']} tests: " + ", ".join(parts))
    where = ", ".join(f"{k} {data[k]}" for k in ("branch", "revision", "environment") if data.get(k))
    if where:
        lines.append(where)
    if data.get("duration_s") is not None:
        lines.append(f"took {data['duration_s']:.1f} s")
    gate = data.get("gate")
    if gate:
        failed_rules = [r.get("message", r.get("rule")) for r in gate.get("failed_rules") or []]
        lines.append(
            f"quality gate {gate.get('status')}" + (": " + "; ".join(failed_rules) if failed_rules else "")
        )
    lines += _names("Newly failing", data.get("newly_failing_tests") or [], data.get("newly_failing_count"))
    if not data.get("newly_failing_tests"):
        lines += _names("Failing", data.get("failing_tests") or [], data.get("failing_count"))
    if data.get("error") and not counts.get("tests"):
        lines.append(str(data["error"])[:300])
    return title, lines, data.get("url")


def _names(label: str, names: Sequence[str], total: int | None) -> list[str]:
    if not names:
        return []
    more = (total or len(names)) - min(len(names), NAMES_SHOWN)
    shown = ", ".join(f"`{n}`" for n in names[:NAMES_SHOWN])
    return [f"{label}: {shown}" + (f" and {more} more" if more > 0 else "")]


def _colour(event: Mapping[str, Any]) -> str:
    status = (event.get("data") or {}).get("status")
    return "2EB67D" if status in OK_STATUSES else "E01E5A" if status else "4A5568"
