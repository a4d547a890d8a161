"""The beat process's duties, run by Celery beat every tick (scheduler/tick.py): re-publish work no
worker has claimed, recover executions whose worker's lease ran out, enforce timeouts and
expiries, start retries that are due, and fire schedules' slots."""
