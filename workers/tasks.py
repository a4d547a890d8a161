"""Thin Celery tasks: take an id, call a plain function."""

from __future__ import annotations

import socket
import uuid

from celery import Task

from workers.celery_app import RUN_TASK, app
from workers.execute import execute


@app.task(name=RUN_TASK, bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> str:
    worker = f"{self.request.hostname or socket.gethostname()}"
    return execute(uuid.UUID(execution_id), worker=worker)
