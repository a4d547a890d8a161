"""The scheduler's pure decisions as tables: backoff, retry, policy layers, lost leases, cron slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.policy import (
    DEFAULT_RETRY,
    RetryPolicy,
    backoff_s,
    due_slot,
    next_fire_times,
    on_lease_expired,
    resolve_retry_policy,
    should_retry,
    valid_cron,
)
from anvil.domain.states import Status


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# ---- backoff ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "cap", "retry_index", "delay"),
    [
        (1.0, 300.0, 0, 1.0),
        (1.0, 300.0, 1, 2.0),
        (1.0, 300.0, 2, 4.0),
        (1.0, 300.0, 8, 256.0),
        (1.0, 300.0, 9, 300.0),  # 512 capped
        (1.0, 300.0, 1000, 300.0),  # a huge index neither overflows nor escapes the cap
        (0.5, 10.0, 3, 4.0),
        (5.0, 5.0, 0, 5.0),  # cap == base: constant
        (5.0, 5.0, 7, 5.0),
        (30.0, 60.0, 1, 60.0),
    ],
)
def test_backoff_doubles_from_the_base_up_to_the_cap(
    base: float, cap: float, retry_index: int, delay: float
) -> None:
    policy = RetryPolicy(backoff_base_s=base, backoff_cap_s=cap, jitter=0.0)
    for rand in (0.0, 0.5, 0.999):
        assert backoff_s(policy, retry_index=retry_index, rand=rand) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("jitter", "rand", "factor"),
    [
        (0.1, 0.0, 0.9),  # lowest draw: -10 %
        (0.1, 0.5, 1.0),  # middle: exactly the delay
        (0.1, 0.75, 1.05),
        (0.5, 0.0, 0.5),
        (0.5, 0.25, 0.75),
        (1.0, 0.0, 0.0),  # full jitter may retry at once, never before
        (1.0, 0.5, 1.0),
    ],
)
def test_jitter_moves_the_delay_by_at_most_its_fraction(jitter: float, rand: float, factor: float) -> None:
    policy = RetryPolicy(backoff_base_s=4.0, backoff_cap_s=100.0, jitter=jitter)
    assert backoff_s(policy, retry_index=1, rand=rand) == pytest.approx(8.0 * factor)


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("retry_index", [0, 1, 4, 12])
def test_jittered_delay_stays_within_bounds_of_the_capped_delay(jitter: float, retry_index: int) -> None:
    policy = RetryPolicy(backoff_base_s=2.0, backoff_cap_s=30.0, jitter=jitter)
    capped = min(30.0, 2.0 * 2**retry_index)
    for step in range(100):
        delay = backoff_s(policy, retry_index=retry_index, rand=step / 100)
        assert capped * (1 - jitter) - 1e-9 <= delay <= capped * (1 + jitter) + 1e-9
        assert delay >= 0.0


# ---- should_retry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_on", "max_retries", "status", "retry_index", "retry"),
    [
        (("ERROR", "TIMEOUT"), 2, Status.ERROR, 0, True),
        (("ERROR", "TIMEOUT"), 2, Status.TIMEOUT, 1, True),
        (("ERROR", "TIMEOUT"), 2, Status.ERROR, 2, False),  # both retries used
        (("ERROR", "TIMEOUT"), 2, Status.FAILED, 0, False),  # an assertion failure is not retried by default
        (("FAILED",), 1, Status.FAILED, 0, True),
        (("FAILED",), 1, Status.FAILED, 1, False),
        (("FAILED",), 1, Status.ERROR, 0, False),
        (("FAILED", "ERROR", "TIMEOUT"), 0, Status.FAILED, 0, False),  # max_retries 0: never
        ((), 5, Status.ERROR, 0, False),  # retry on nothing
        (("FAILED", "ERROR", "TIMEOUT"), 3, Status.PASSED, 0, False),
        (("FAILED", "ERROR", "TIMEOUT"), 3, Status.CANCELLED, 0, False),
        (("FAILED", "ERROR", "TIMEOUT"), 3, Status.ABORTED, 0, False),
    ],
)
def test_should_retry(
    retry_on: tuple[str, ...], max_retries: int, status: Status, retry_index: int, retry: bool
) -> None:
    policy = RetryPolicy(max_retries=max_retries, retry_on=retry_on)
    assert should_retry(policy, status=status, retry_index=retry_index) is retry


# ---- policy layers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), DEFAULT_RETRY),
        ((None, None, None), DEFAULT_RETRY),
        (({},), DEFAULT_RETRY),
        (({"max_retries": 2},), RetryPolicy(max_retries=2)),
        # case, then suite, then submission: the later layer wins key by key
        (
            ({"max_retries": 2, "retry_on": ["FAILED"]}, {"max_retries": 4}, None),
            RetryPolicy(max_retries=4, retry_on=("FAILED",)),
        ),
        (
            ({"max_retries": 2, "backoff_base_s": 5}, {"backoff_cap_s": 50}, {"max_retries": 0}),
            RetryPolicy(max_retries=0, backoff_base_s=5, backoff_cap_s=50),
        ),
        (
            (None, {"jitter": 0.0}, {"retry_on": ["ERROR"], "jitter": None}),  # None inherits
            RetryPolicy(retry_on=("ERROR",), jitter=0.0),
        ),
        (({"retry_on": []},), RetryPolicy(retry_on=())),
    ],
)
def test_resolve_retry_policy_layers(layers: tuple[dict | None, ...], expected: RetryPolicy) -> None:
    resolved = resolve_retry_policy(*layers)
    assert resolved == expected
    assert resolve_retry_policy(resolved.as_dict()) == resolved  # what an execution stores resolves back


def test_the_default_policy_does_not_retry_but_names_error_and_timeout() -> None:
    assert DEFAULT_RETRY.max_retries == 0
    assert DEFAULT_RETRY.retry_on == ("ERROR", "TIMEOUT")


# ---- lost leases -------------------------------------------------------------------------------------

T0 = utc(2024, 6, 1, 12, 0)


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "started_after_s", "cancel", "status", "reason_part"),
    [
        (1, 3, 5.0, False, Status.QUEUED, "worker_lost"),
        (2, 3, 5.0, False, Status.QUEUED, "worker_lost"),
        (3, 3, 5.0, False, Status.ABORTED, "3 attempts"),  # exhausted
        (5, 3, 5.0, False, Status.ABORTED, "worker_lost"),
        (1, 3, 70.0, False, Status.QUEUED, "worker_lost"),  # timeout 60 + grace 30 not yet passed
        (1, 3, 90.0, False, Status.TIMEOUT, "deadline"),  # exactly deadline + grace
        (3, 3, 500.0, False, Status.TIMEOUT, "deadline"),  # the deadline wins over exhaustion
        (1, 3, 5.0, True, Status.CANCELLED, "cancelled"),  # a cancel request wins over everything
        (3, 3, 500.0, True, Status.CANCELLED, "cancelled"),
        (1, 3, None, False, Status.QUEUED, "worker_lost"),  # never recorded a start: no deadline
    ],
)
def test_on_lease_expired(
    attempt: int,
    max_attempts: int,
    started_after_s: float | None,
    cancel: bool,
    status: Status,
    reason_part: str,
) -> None:
    started = None if started_after_s is None else T0 - timedelta(seconds=started_after_s)
    decision = on_lease_expired(
        attempt=attempt,
        max_attempts=max_attempts,
        started_at=started,
        timeout_s=60.0,
        grace_s=30.0,
        now=T0,
        cancel_requested=cancel,
    )
    assert decision.status is status
    assert reason_part in decision.reason


def test_a_requeue_reason_is_exactly_worker_lost() -> None:
    decision = on_lease_expired(
        attempt=1, max_attempts=3, started_at=T0, timeout_s=60, grace_s=30, now=T0, cancel_requested=False
    )
    assert decision.reason == "worker_lost"


# ---- cron slots --------------------------------------------------------------------------------------

LONG_AGO = utc(2024, 1, 1)


@pytest.mark.parametrize(
    ("cron", "tz", "last_slot", "since", "now", "fire_at", "skipped"),
    [
        # nothing fired yet, created 12:00:30: the first slot is 12:01
        ("* * * * *", "UTC", None, utc(2024, 6, 1, 12, 0, 30), utc(2024, 6, 1, 12, 0, 59), None, []),
        (
            "* * * * *",
            "UTC",
            None,
            utc(2024, 6, 1, 12, 0, 30),
            utc(2024, 6, 1, 12, 1, 0, 2),
            utc(2024, 6, 1, 12, 1),
            [],
        ),
        # a slot exactly at now is due
        (
            "* * * * *",
            "UTC",
            None,
            utc(2024, 6, 1, 12, 0, 30),
            utc(2024, 6, 1, 12, 1),
            utc(2024, 6, 1, 12, 1),
            [],
        ),
        # already fired: nothing until the next slot
        ("* * * * *", "UTC", utc(2024, 6, 1, 12, 1), LONG_AGO, utc(2024, 6, 1, 12, 1, 40), None, []),
        # missed 12:02..12:05 while no scheduler ran: only the latest fires, the others are passed over
        (
            "* * * * *",
            "UTC",
            utc(2024, 6, 1, 12, 1),
            LONG_AGO,
            utc(2024, 6, 1, 12, 5, 30),
            utc(2024, 6, 1, 12, 5),
            [utc(2024, 6, 1, 12, 4), utc(2024, 6, 1, 12, 3), utc(2024, 6, 1, 12, 2)],
        ),
        # a week down: still one run, for the latest slot (the list of passed-over slots is bounded)
        (
            "0 2 * * *",
            "UTC",
            utc(2024, 6, 1, 2),
            LONG_AGO,
            utc(2024, 6, 9, 3),
            utc(2024, 6, 9, 2),
            [utc(2024, 6, d, 2) for d in (8, 7, 6, 5, 4)],
        ),
        # changed (PATCH) after the last slot: slots before the change are not made up
        ("*/5 * * * *", "UTC", utc(2024, 6, 1, 11), utc(2024, 6, 1, 12, 7), utc(2024, 6, 1, 12, 9), None, []),
        (
            "*/5 * * * *",
            "UTC",
            utc(2024, 6, 1, 11),
            utc(2024, 6, 1, 12, 7),
            utc(2024, 6, 1, 12, 10, 1),
            utc(2024, 6, 1, 12, 10),
            [],
        ),
        # the time zone: 02:00 in Berlin in summer is 00:00 UTC
        ("0 2 * * *", "Europe/Berlin", utc(2024, 6, 1, 0), LONG_AGO, utc(2024, 6, 1, 23, 59), None, []),
        (
            "0 2 * * *",
            "Europe/Berlin",
            utc(2024, 6, 1, 0),
            LONG_AGO,
            utc(2024, 6, 2, 0, 0, 1),
            utc(2024, 6, 2, 0),
            [],
        ),
    ],
)
def test_due_slot(
    cron: str,
    tz: str,
    last_slot: datetime | None,
    since: datetime,
    now: datetime,
    fire_at: datetime | None,
    skipped: list[datetime],
) -> None:
    decision = due_slot(cron=cron, tz=tz, last_slot=last_slot, since=since, now=now)
    assert decision.fire_at == fire_at
    assert decision.skipped == skipped


def test_missed_slots_fire_once_then_wait_for_the_next() -> None:
    """Replaying the tick with the slot it fired recorded: the same slot never fires twice."""
    now = utc(2024, 6, 1, 12, 5, 30)
    first = due_slot(cron="* * * * *", tz="UTC", last_slot=utc(2024, 6, 1, 12), since=LONG_AGO, now=now)
    assert first.fire_at == utc(2024, 6, 1, 12, 5)
    for later_s in (0, 1, 29):
        again = due_slot(
            cron="* * * * *",
            tz="UTC",
            last_slot=first.fire_at,
            since=LONG_AGO,
            now=now + timedelta(seconds=later_s),
        )
        assert again.fire_at is None
    nxt = due_slot(
        cron="* * * * *", tz="UTC", last_slot=first.fire_at, since=LONG_AGO, now=utc(2024, 6, 1, 12, 6, 1)
    )
    assert nxt.fire_at == utc(2024, 6, 1, 12, 6) and nxt.skipped == []


# DST in Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET.


def test_nightly_at_two_in_berlin_runs_once_on_the_night_the_clocks_go_forward() -> None:
    # 02:00 does not exist that night: it runs at 03:00 CEST (01:00 UTC), once.
    times = next_fire_times(cron="0 2 * * *", tz="Europe/Berlin", now=utc(2024, 3, 29, 12), count=4)
    assert times == [utc(2024, 3, 30, 1), utc(2024, 3, 31, 1), utc(2024, 4, 1, 0), utc(2024, 4, 2, 0)]
    decision = due_slot(
        cron="0 2 * * *",
        tz="Europe/Berlin",
        last_slot=utc(2024, 3, 30, 1),
        since=LONG_AGO,
        now=utc(2024, 3, 31, 1, 0, 5),
    )
    assert decision.fire_at == utc(2024, 3, 31, 1)


def test_nightly_at_two_in_berlin_runs_once_on_the_night_the_clocks_go_back() -> None:
    # 02:00 happens twice (00:00 UTC in CEST, 01:00 UTC in CET): only the first fires.
    times = next_fire_times(cron="0 2 * * *", tz="Europe/Berlin", now=utc(2024, 10, 25, 12), count=4)
    assert times == [utc(2024, 10, 26, 0), utc(2024, 10, 27, 0), utc(2024, 10, 28, 1), utc(2024, 10, 29, 1)]
    for now in (utc(2024, 10, 27, 1, 0, 5), utc(2024, 10, 27, 1, 30), utc(2024, 10, 28, 0, 59)):
        repeat = due_slot(
            cron="0 2 * * *", tz="Europe/Berlin", last_slot=utc(2024, 10, 27, 0), since=LONG_AGO, now=now
        )
        assert repeat.fire_at is None, now
    # A scheduler down over the whole night still catches up with the one 02:00 run.
    caught_up = due_slot(
        cron="0 2 * * *",
        tz="Europe/Berlin",
        last_slot=utc(2024, 10, 26, 0),
        since=LONG_AGO,
        now=utc(2024, 10, 27, 1, 30),
    )
    assert caught_up.fire_at == utc(2024, 10, 27, 0)


def test_hourly_in_berlin_follows_real_hours_across_both_changes() -> None:
    back = next_fire_times(cron="0 * * * *", tz="Europe/Berlin", now=utc(2024, 10, 26, 23, 30), count=4)
    assert back == [utc(2024, 10, 27, h) for h in (0, 1, 2, 3)]  # 02:00 CEST, 02:00 CET, 03:00, 04:00
    forward = next_fire_times(cron="0 * * * *", tz="Europe/Berlin", now=utc(2024, 3, 30, 23, 30), count=3)
    assert forward == [utc(2024, 3, 31, h) for h in (0, 1, 2)]  # 01:00 CET, 03:00 CEST, 04:00 CEST


def test_day_of_month_and_day_of_week_combine_with_or() -> None:
    # "0 0 1 * 1": midnight on the 1st OR on any Monday (cron semantics, not AND).
    times = next_fire_times(cron="0 0 1 * 1", tz="UTC", now=utc(2024, 1, 1, 12), count=6)
    assert times == [
        utc(2024, 1, 8),
        utc(2024, 1, 15),
        utc(2024, 1, 22),
        utc(2024, 1, 29),
        utc(2024, 2, 1),
        utc(2024, 2, 5),
    ]
    assert utc(2024, 2, 1).weekday() == 3  # a Thursday: fired for the day of month alone


@pytest.mark.parametrize(
    ("cron", "tz", "now", "expected"),
    [
        ("*/15 * * * *", "UTC", utc(2024, 6, 1, 12, 7), [utc(2024, 6, 1, 12, m) for m in (15, 30, 45)]),
        (
            "*/15 * * * *",
            "UTC",
            utc(2024, 6, 1, 12, 15),
            [utc(2024, 6, 1, 12, m) for m in (30, 45)],
        ),  # strictly after
        (
            "0 2 * * *",
            "Europe/Berlin",
            utc(2024, 1, 10, 12),
            [utc(2024, 1, 11, 1), utc(2024, 1, 12, 1)],
        ),  # CET
        (
            "30 9 * * 1-5",
            "America/New_York",
            utc(2024, 6, 7, 14),
            [utc(2024, 6, 10, 13, 30), utc(2024, 6, 11, 13, 30)],
        ),
    ],
)
def test_next_fire_times(cron: str, tz: str, now: datetime, expected: list[datetime]) -> None:
    times = next_fire_times(cron=cron, tz=tz, now=now, count=len(expected))
    assert times == expected
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)


def test_next_fire_times_gives_five_by_default() -> None:
    assert len(next_fire_times(cron="* * * * *", tz="UTC", now=T0)) == 5


@pytest.mark.parametrize(
    ("cron", "valid"),
    [
        ("* * * * *", True),
        ("0 2 * * *", True),
        ("0 0 1 * 1", True),
        ("*/5 9-17 * * mon-fri", True),
        ("0 0 29 2 *", True),  # leap days exist
        ("0 0 31 2 *", False),  # never fires
        ("* * * *", False),  # four fields
        ("0 * * * * *", False),  # six (seconds) fields
        ("@daily", False),  # not the standard five fields
        ("61 * * * *", False),
        ("*/0 * * * *", False),
        ("a b c d e", False),
        ("", False),
    ],
)
def test_valid_cron(cron: str, valid: bool) -> None:
    assert valid_cron(cron) is valid
