"""Thin Celery tasks: take an id, call a plain function."""

from __future__ import annotations

import socket
import uuid

from celery import Task
from celery.signals import worker_process_init

from workers.celery_app import RUN_TASK, app
from workers.execute import execute
from workers.sandbox import become_subreaper


@worker_process_init.connect
def _adopt_orphans(**_: object) -> None:
    # Tests that detach (setsid) are re-parented to this pool process and killed with their test.
    become_subreaper()


@app.task(name=RUN_TASK, bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> str:
    worker = f"{self.request.hostname or socket.gethostname()}"
    return execute(uuid.UUID(execution_id), worker=worker)
