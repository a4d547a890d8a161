"""Celery beat plus the tick: re-publish unclaimed work (later: retries, timeouts, schedules)."""
