"""One scheduler tick. Runs inside the beat process (scheduler/beat.py), about once a second."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from anvil.settings import Settings, get_settings
from db.executions import mark_republished, queued_candidates
from db.session import new_session, read_db_now
from scheduler.policy import should_republish
from workers.publish import publish_many

log = logging.getLogger("anvil.tick")


@dataclass
class TickReport:
    republished: int = 0


def run_tick(settings: Settings | None = None) -> TickReport:
    settings = settings or get_settings()
    report = TickReport()
    with new_session() as session, session.begin():
        now = read_db_now(session)
        due = [
            (ex.id, ex.priority)
            for ex in queued_candidates(session)
            if should_republish(
                last_published=ex.published_at or ex.queued_at or ex.created_at,
                publish_count=ex.publish_count,
                now=now,
                after_s=settings.republish_after_s,
            )
        ]
        mark_republished(session, [ident for ident, _ in due])
    # After the commit: a publish that fails now is simply found again on a later tick.
    if due:
        report.republished = publish_many(due)
        log.info("re-published %d unclaimed executions", len(due))
    return report
