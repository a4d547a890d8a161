"""The Celery app, thin tasks, the runners and the sandbox test processes run in."""
