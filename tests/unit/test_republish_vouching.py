"""Which silent QUEUED executions the reconciler publishes again: those no look at the broker vouches for."""

from __future__ import annotations

import uuid

import pytest

from anvil.domain.policy import missing_from_broker, vouched_until

A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))
AFTER_S = 10.0
LOOKED_AT = 100.0


def test_a_waiting_message_is_vouched_for_after_s_from_the_look() -> None:
    until = vouched_until(waiting=[A, B], taken={}, looked_at=LOOKED_AT, after_s=AFTER_S)
    assert until == {A: 110.0, B: 110.0}


def test_a_taken_message_is_vouched_for_after_s_from_when_a_worker_took_it() -> None:
    # Taken 4 s before the look: vouched until 6 s after it; taken 30 s before: not at all.
    until = vouched_until(waiting=[], taken={A: 4.0, B: 30.0}, looked_at=LOOKED_AT, after_s=AFTER_S)
    assert until == {A: 106.0, B: 80.0}
    assert missing_from_broker([A, B], until, now=LOOKED_AT) == [B]


def test_a_copy_waiting_in_a_queue_outweighs_an_old_taken_one() -> None:
    until = vouched_until(waiting=[A], taken={A: 30.0}, looked_at=LOOKED_AT, after_s=AFTER_S)
    assert until == {A: 110.0}


@pytest.mark.parametrize(
    ("now", "missing"),
    [
        (LOOKED_AT, [C]),  # C was not in the broker
        (109.9, [C]),
        (110.0, [A, B, C]),  # the look is too old to vouch for anything
        (500.0, [A, B, C]),
    ],
)
def test_missing_from_broker_by_age_of_the_look(now: float, missing: list[uuid.UUID]) -> None:
    until = vouched_until(waiting=[A, B], taken={}, looked_at=LOOKED_AT, after_s=AFTER_S)
    assert missing_from_broker([A, B, C], until, now=now) == missing


def test_an_unreadable_broker_vouches_for_nothing() -> None:
    assert missing_from_broker([A, B, C], None, now=LOOKED_AT) == [A, B, C]


def test_nothing_silent_nothing_missing() -> None:
    assert missing_from_broker([], {}, now=LOOKED_AT) == []
    assert missing_from_broker([], None, now=LOOKED_AT) == []
