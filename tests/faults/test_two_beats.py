"""Fault 5: two beat processes for 60 s with schedules firing: no slot runs twice, none is missed.

How this stays honest and fast: the API accepts only standard five-field crons, whose finest
granularity is a minute, so in a 60 s window a minute schedule fires once. The test therefore runs
two kinds of schedule side by side while BOTH beats run for 65 s (which always spans at least one
real minute boundary):

- ten "* * * * *" schedules created through the API, exactly as a user would;
- one schedule firing every 5 s ("* * * * * */5", croniter's optional sixth field = seconds),
  written directly into the database because the API refuses six fields. The scheduler's tick does
  not care about the granularity (it asks croniter for the latest slot), so this exercises the same
  lease, firing and unique-constraint path about a dozen times in the window.

Both beats tick every second against the same database; only the holder of the ``tick`` lease acts,
and the (schedule, slot) unique constraint makes a second firing impossible anyway. After the beats
stop, every slot of every schedule between its creation and the end of the window (minus a margin for
the last tick) must have exactly one execution, there must be no execution for a time that is not a
slot, and every fired execution must finish with one attempt and no detector collision.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from sqlalchemy.orm import Session

from tests.faults.conftest import FaultStackFactory
from tests.faults.ledger import assert_clean, report

pytestmark = pytest.mark.fault

WINDOW_S = 65.0
MARGIN_S = 4.0  # a slot this close to the end may not have been fired yet when the beats stop
MINUTE_SCHEDULES = 10
SECONDS_CRON = "* * * * * */5"


def test_two_beats_fire_each_slot_exactly_once(make_fault_stack: FaultStackFactory) -> None:
    stack = make_fault_stack(workers=1, concurrency=2, beats=2)
    case = stack.detector_case(0.1)
    for n in range(MINUTE_SCHEDULES):
        response = stack.client.post(
            "/api/v1/schedules",
            json={
                "name": f"every-minute-{n}",
                "cron": "* * * * *",
                "test_case_id": case["id"],
                "overlap": "allow",
            },
        )
        assert response.status_code == 201, response.text
    from db.schedules import create_schedule

    with Session(stack.engine) as session, session.begin():
        create_schedule(
            session,
            created_by=None,
            name="every-5-seconds",
            cron=SECONDS_CRON,
            timezone="UTC",
            test_case_id=uuid.UUID(case["id"]),
            priority="NORMAL",
            enabled=True,
            overlap="allow",
            params={},
        )

    holders: Counter[str] = Counter()
    window_end = time.monotonic() + WINDOW_S
    while time.monotonic() < window_end:
        assert all(beat.alive() for beat in stack.beats), "a beat process died"
        holders.update(row[0] for row in stack.sql("SELECT holder FROM scheduler_leases WHERE name = 'tick'"))
        time.sleep(1)
    ended = datetime.now(UTC)
    for beat in stack.beats:
        beat.stop(timeout=20)

    figures = stack.check(timeout=90)
    schedules = stack.sql("SELECT id, name, cron, updated_at FROM schedules ORDER BY name")
    fired = stack.sql(
        "SELECT schedule_id, slot_at, count(*) FROM executions WHERE schedule_id IS NOT NULL "
        "GROUP BY schedule_id, slot_at"
    )
    by_schedule: dict[object, list[datetime]] = {s.id: [] for s in schedules}
    for schedule_id, slot_at, count in fired:
        by_schedule[schedule_id] += [slot_at] * count
    missed, twice, off_slot, expected_total = [], [], [], 0
    for schedule in schedules:
        slots = _slots(schedule.cron, schedule.updated_at, ended - timedelta(seconds=MARGIN_S))
        allowed = set(_slots(schedule.cron, schedule.updated_at, ended + timedelta(seconds=30)))
        got = Counter(by_schedule[schedule.id])
        expected_total += len(slots)
        missed += [(schedule.name, s) for s in slots if s not in got]
        twice += [(schedule.name, s) for s, n in got.items() if n > 1]
        off_slot += [(schedule.name, s) for s in got if s not in allowed]
    figures.update(
        beats=len(stack.beats),
        window_s=WINDOW_S,
        schedules=len(schedules),
        slots_expected=expected_total,
        slots_fired=sum(n for _, _, n in fired),
        slots_missed=len(missed),
        slots_fired_twice=len(twice),
        off_slot=len(off_slot),
        lease_holders_seen=len(holders),
    )
    report("fault5_two_beats_schedules", figures)

    assert not twice, f"slots fired twice: {twice}"
    assert not missed, f"slots never fired: {missed}"
    assert not off_slot, f"executions for times that are not slots: {off_slot}"
    # 65 s always span a minute boundary: each minute schedule had a slot to fire, the 5 s one about 12.
    assert expected_total >= MINUTE_SCHEDULES + 10, "the window held too few slots to prove anything"
    assert set(figures["statuses"]) == {"PASSED"}, figures["statuses"]
    assert figures["max_attempt"] == 1
    assert_clean(figures)


def _slots(cron: str, after: datetime, until: datetime) -> list[datetime]:
    """The cron's fire times (UTC) in (after, until]."""
    walker = croniter(cron, after.astimezone(UTC))
    out = []
    while True:
        slot = walker.get_next(datetime).astimezone(UTC)
        if slot > until:
            return out
        out.append(slot)
