"""Fault: a beat whose clock is 10 minutes ahead (libfaketime) beside a normal one, for 3 minutes.

Every "is it due" decision and the beat lease must use PostgreSQL's clock (now()), never the
process's: otherwise the skewed beat would think the other's lease long expired and take it (two
leaders), write leases that stay valid 10 minutes too long, or fire slots 10 minutes early.

Timeline (about 190 s, so at least three 1-minute slots of each schedule): the skewed beat starts
first and holds the tick lease, with the normal beat beside it; halfway through the skewed beat is
SIGKILLed, the normal one must take over once the lease expired by the database clock, and a new
skewed beat stands beside it until the end. Five "* * * * *" schedules are created through the API.

A trigger (installed in the test's database) logs every write of the lease row with the database's
clock_timestamp(): a change of holder while the previous lease was still valid is an early expiry,
and a lease written to expire more than its TTL ahead was computed on a skewed clock. Then every slot
between the schedules' creation and the end fired exactly once, none off-slot, each execution
created and published at its slot's time (not 10 minutes later), all PASSED with one attempt.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from croniter import croniter
from sqlalchemy import text

from anvil.cli.processes import Child, wait_log
from tests.e2e.conftest import START_TIMEOUT_S
from tests.faults.conftest import FaultStack, FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = [pytest.mark.fault, pytest.mark.timeout(420)]  # 190 s of schedules, plus start-up

SKEW = ["faketime", "-f", "+10m"]
WINDOW_S = 190.0
HANDOVER_AT_S = 95.0
MARGIN_S = 4.0  # a slot this close to the end may not have been fired yet when the beats stop
SCHEDULES = 5
LEASE_TTL_S = 3.0  # the tick lease: max(3 x tick interval (1 s), 3 s), scheduler/tick.py
LATE_LIMIT_S = 30.0  # a slot's execution is created this soon after the slot, at the latest
LEASE_LOG = """
CREATE TABLE lease_log (
    id bigserial PRIMARY KEY, old_holder text, old_expires timestamptz, new_holder text,
    new_expires timestamptz, at timestamptz
);
CREATE FUNCTION log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO lease_log (old_holder, old_expires, new_holder, new_expires, at)
        VALUES (OLD.holder, OLD.expires_at, NEW.holder, NEW.expires_at, clock_timestamp());
    ELSE
        INSERT INTO lease_log (new_holder, new_expires, at)
        VALUES (NEW.holder, NEW.expires_at, clock_timestamp());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lease_log AFTER INSERT OR UPDATE ON scheduler_leases
    FOR EACH ROW WHEN (NEW.name = 'tick') EXECUTE FUNCTION log_lease();
"""


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime (libfaketime) is not installed")
def test_skewed_beat_beside_a_normal_one(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=1, concurrency=2, beats=0)
    with stack.engine.begin() as conn:
        conn.execute(text(LEASE_LOG))
    case = stack.detector_case(0.1)
    for n in range(SCHEDULES):
        response = stack.client.post(
            "/api/v1/schedules",
            json={"name": f"minute-{n}", "cron": "* * * * *", "test_case_id": case["id"], "overlap": "allow"},
        )
        assert response.status_code == 201, response.text

    started = time.monotonic()
    skewed = _beat(stack, skewed=True)
    first_holder = _wait_holder(stack)
    assert _is_skewed(first_holder), f"the first lease holder {first_holder} is not the skewed beat"
    _beat(stack, skewed=False)
    _sleep_until(stack, started + HANDOVER_AT_S)
    skewed.kill()  # SIGKILL: its lease is left to expire
    # The normal beat, the only one left, takes the lease once it expires; a new skewed beat joins
    # only then (started at once, it could win that race and the normal beat would never lead).
    _wait_holder(stack, other_than=first_holder)
    _beat(stack, skewed=True)
    _sleep_until(stack, started + WINDOW_S)
    ended = datetime.now(UTC)
    for beat in stack.beats:  # SIGKILL, one right after the other: none takes over during a shutdown
        beat.kill()

    figures = stack.check(timeout=90)
    figures.update(_lease_figures(stack), **_slot_figures(stack, ended))
    figures.update(window_s=round(time.monotonic() - started, 1), skew="+10m", schedules=SCHEDULES)
    report("fault_beat_clock_skew_10m", figures)

    assert figures["early_takeovers"] == 0, f"a lease changed holder before it expired: {figures}"
    assert figures["max_lease_ahead_s"] <= LEASE_TTL_S + 1, f"a lease computed on a skewed clock: {figures}"
    assert figures["skewed_held"] and figures["normal_held"], f"both kinds of beat must have led: {figures}"
    assert figures["holder_changes"] >= 1, figures
    assert not figures["_twice"], f"slots fired twice: {figures['_twice']}"
    assert not figures["_missed"], f"slots never fired: {figures['_missed']}"
    assert not figures["_off_slot"], f"executions for times that are not slots: {figures['_off_slot']}"
    assert figures["slots_expected"] >= 3 * SCHEDULES, "the window held too few slots to prove anything"
    assert figures["late_or_future_timestamps"] == 0, f"executions not stamped at their slot: {figures}"
    assert set(figures["statuses"]) == {"PASSED"}, figures["statuses"]
    assert figures["max_attempt"] == 1
    assert_clean(figures)


def _beat(stack: FaultStack, *, skewed: bool) -> Child:
    child = stack.start_beat(wrapper=SKEW if skewed else ())
    wait_log(child, "beat: Starting", timeout=START_TIMEOUT_S)
    return child


def _wait_holder(stack: FaultStack, *, other_than: str | None = None) -> str:
    """The tick lease's holder once there is one (``other_than``: once another beat holds it)."""
    deadline = time.monotonic() + 30 + LEASE_TTL_S
    while True:
        rows = stack.sql("SELECT holder FROM scheduler_leases WHERE name = 'tick'")
        if rows and str(rows[0][0]) != other_than:
            _is_skewed(str(rows[0][0]))  # learned while it lives
            return str(rows[0][0])
        assert time.monotonic() < deadline, f"no beat (other than {other_than}) took the tick lease"
        time.sleep(0.2)


def _sleep_until(stack: FaultStack, moment: float) -> None:
    """Wait, checking the beats live, and learn which kind of beat each lease holder is."""
    while time.monotonic() < moment:
        assert all(beat.alive() for beat in stack.beats if beat.proc.returncode is None), "a beat died"
        for (holder,) in stack.sql("SELECT holder FROM scheduler_leases WHERE name = 'tick'"):
            _is_skewed(holder)
        time.sleep(0.5)


_SKEWED: dict[str, bool] = {}


def _is_skewed(holder: str) -> bool:
    """Whether the beat named in a lease (host/pid/nonce) runs under faketime (read while it lives)."""
    if holder not in _SKEWED:
        environ = Path(f"/proc/{holder.split('/')[1]}/environ")
        _SKEWED[holder] = b"FAKETIME=" in environ.read_bytes()
    return _SKEWED[holder]


def _lease_figures(stack: FaultStack) -> dict[str, object]:
    log = stack.sql("SELECT old_holder, old_expires, new_holder, new_expires, at FROM lease_log ORDER BY id")
    changes = [row for row in log if row.old_holder is not None and row.old_holder != row.new_holder]
    holders = {row.new_holder for row in log}
    return {
        "lease_writes": len(log),
        "holder_changes": len(changes),
        # Taken while the previous holder's lease was still valid by the database's clock.
        "early_takeovers": sum(1 for row in changes if row.old_expires > row.at),
        "max_lease_ahead_s": round(max((row.new_expires - row.at).total_seconds() for row in log), 2),
        "handover_gap_s": [round((row.at - row.old_expires).total_seconds(), 2) for row in changes],
        "skewed_held": any(_SKEWED.get(h) for h in holders),
        "normal_held": any(_SKEWED.get(h) is False for h in holders),
        "_unclassified": [h for h in holders if h not in _SKEWED],
    }


def _slot_figures(stack: FaultStack, ended: datetime) -> dict[str, object]:
    schedules = stack.sql("SELECT id, name, cron, updated_at FROM schedules ORDER BY name")
    fired = stack.sql(
        "SELECT schedule_id, slot_at, created_at, published_at FROM executions WHERE schedule_id IS NOT NULL"
    )
    got: dict[object, Counter[datetime]] = {s.id: Counter() for s in schedules}
    for row in fired:
        got[row.schedule_id][row.slot_at] += 1
    missed, twice, off_slot, expected = [], [], [], 0
    for schedule in schedules:
        slots = _slots(schedule.cron, schedule.updated_at, ended - timedelta(seconds=MARGIN_S))
        allowed = set(_slots(schedule.cron, schedule.updated_at, ended + timedelta(seconds=30)))
        expected += len(slots)
        missed += [(schedule.name, s) for s in slots if s not in got[schedule.id]]
        twice += [(schedule.name, s) for s, n in got[schedule.id].items() if n > 1]
        off_slot += [(schedule.name, s) for s in got[schedule.id] if s not in allowed]
    stamps = [(row.created_at - row.slot_at, row.published_at - row.slot_at) for row in fired]
    late = timedelta(seconds=LATE_LIMIT_S)
    return {
        "slots_expected": expected,
        "slots_fired": len(fired),
        "slots_missed": len(missed),
        "slots_fired_twice": len(twice),
        "off_slot": len(off_slot),
        "max_created_after_slot_s": round(max((c.total_seconds() for c, _ in stamps), default=0.0), 1),
        "late_or_future_timestamps": sum(
            1 for c, p in stamps if not (timedelta(0) <= c <= late and p <= late)
        ),
        "_missed": missed,
        "_twice": twice,
        "_off_slot": off_slot,
    }


def _slots(cron: str, after: datetime, until: datetime) -> list[datetime]:
    """The cron's fire times (UTC) in (after, until]."""
    walker = croniter(cron, after.astimezone(UTC))
    out = []
    while True:
        slot = walker.get_next(datetime).astimezone(UTC)
        if slot > until:
            return out
        out.append(slot)
