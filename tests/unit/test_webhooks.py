"""The pure side of webhooks: which events a subscription's filters let through, the run's change
against the previous one, the retry schedule, the redacted URL, signatures a Standard Webhooks
receiver accepts, and the Slack and Teams messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from anvil.domain.webhooks import (
    EXECUTION_FINISHED,
    FLAKY_DETECTED,
    QUARANTINE_CHANGED,
    body,
    change,
    envelope,
    matches,
    new_secret,
    next_attempt,
    redacted,
    signed_headers,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = {
    "test_case_id": None,
    "test_suite_id": "s1",
    "schedule_id": "n1",
    "status": "FAILED",
    "change": "newly_failing",
}


@pytest.mark.parametrize(
    ("status", "previous", "expected"),
    [
        ("PASSED", None, "first"),
        ("FAILED", None, "newly_failing"),
        ("FAILED", "PASSED", "newly_failing"),
        ("ERROR", "SKIPPED", "newly_failing"),
        ("PASSED", "TIMEOUT", "fixed"),
        ("FAILED", "ERROR", "still_failing"),
        ("SKIPPED", "PASSED", "still_passing"),
    ],
)
def test_a_runs_change_against_the_previous_run(status: str, previous: str | None, expected: str) -> None:
    assert change(status, previous) == expected


@pytest.mark.parametrize(
    ("filters", "data", "passes"),
    [
        ({}, RUN, True),
        ({"suite_ids": ["s1"]}, RUN, True),
        ({"suite_ids": ["s2"]}, RUN, False),
        ({"case_ids": ["c1"]}, RUN, False),
        ({"case_ids": ["c1"], "suite_ids": ["s1"]}, RUN, True),  # either target
        ({"schedule_ids": ["n2"]}, RUN, False),
        ({"statuses": ["PASSED"]}, RUN, False),
        ({"statuses": ["FAILED", "ERROR"]}, RUN, True),
        ({"only_changes": True}, RUN, True),
        ({"only_changes": True}, {**RUN, "change": "still_failing"}, False),
        ({"only_changes": True}, {**RUN, "change": "fixed", "status": "PASSED"}, True),
    ],
)
def test_filters_of_execution_finished(filters: dict[str, Any], data: dict[str, Any], passes: bool) -> None:
    assert matches(filters, EXECUTION_FINISHED, data) is passes


def test_test_events_are_narrowed_by_case_only() -> None:
    flaky = {"test_case_id": "c1", "test_name": "t"}
    assert matches({"case_ids": ["c1"], "statuses": ["FAILED"]}, FLAKY_DETECTED, flaky)
    assert not matches({"case_ids": ["c2"]}, QUARANTINE_CHANGED, flaky)
    assert matches({"suite_ids": ["s9"], "only_changes": True}, FLAKY_DETECTED, flaky)


def test_retries_grow_and_stop_when_the_window_closes() -> None:
    window = timedelta(hours=24)
    waits = [(next_attempt(NOW, n, NOW, window) or NOW) - NOW for n in range(1, 10)]
    assert [w.total_seconds() for w in waits] == [5, 30, 120, 600, 1800, 3600, 10800, 10800, 10800]
    assert next_attempt(NOW, 1, NOW, window, first_wait_s=0.5) == NOW + timedelta(seconds=0.5)
    late = NOW + timedelta(hours=23, minutes=59)
    assert next_attempt(NOW, 5, late, window) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/…"),
        ("http://user:pw@10.0.0.5:8080/hook?token=x", "http://10.0.0.5:8080/…"),
        ("https://ci.example.com", "https://ci.example.com/"),
    ],
)
def test_urls_are_shown_without_path_query_or_credentials(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_standard_webhooks_receiver_accepts_the_signature_and_refuses_a_forgery() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and new_secret() != secret
    at = datetime.now(UTC)
    payload = json.dumps(envelope(EXECUTION_FINISHED, at, RUN))
    headers = signed_headers(secret, "d-1", at, payload)
    assert Webhook(secret).verify(payload, headers)["data"] == RUN
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(payload.replace("FAILED", "PASSED"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(payload, headers)


def finished(**data: Any) -> dict[str, Any]:
    base = {
        "kind": "suite", "name": "nightly", "status": "FAILED", "change": "newly_failing",
        "counts": {"tests": 120, "passed": 100, "failed": 15, "errors": 1, "skipped": 4},
        "branch": "main", "revision": "abc123", "duration_s": 62.5,
        "newly_failing_tests": [f"t.py::test_{i}" for i in range(12)], "newly_failing_count": 16,
        "gate": {"status": "failed", "failed_rules": [
            {"rule": "max_failures", "message": "16 tests failed; at most 0 may fail"},
        ]},
        "url": "https://anvil.example.com/ui/executions/e1",
    }  # fmt: skip
    return envelope(EXECUTION_FINISHED, NOW, {**base, **data})


def test_a_slack_message_says_what_failed_and_links_to_the_run() -> None:
    text = body("slack", finished())["text"]
    assert text.splitlines() == [
        "*Suite nightly: FAILED (newly failing)*",
        "120 tests: 100 passed, 15 failed, 1 errors, 4 skipped",
        "branch main, revision abc123",
        "took 62.5 s",
        "quality gate failed: 16 tests failed; at most 0 may fail",
        "Newly failing: " + ", ".join(f"`t.py::test_{i}`" for i in range(10)) + " and 6 more",
        "<https://anvil.example.com/ui/executions/e1|Open in Anvil>",
    ]


def test_a_teams_card_is_coloured_by_the_result() -> None:
    card = body(
        "teams", finished(status="PASSED", change="fixed", newly_failing_tests=[], newly_failing_count=0)
    )
    assert card["title"] == "Suite nightly: PASSED (fixed)" and card["themeColor"] == "2EB67D"
    assert card["potentialAction"][0]["targets"][0]["uri"] == "https://anvil.example.com/ui/executions/e1"
    assert body("standard", finished()) == finished()
