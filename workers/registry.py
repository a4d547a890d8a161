"""This worker's row in the worker registry (db/workers.py), kept by the worker's main process:

- registered when Celery says the worker is ready (``worker_ready``: it consumes now), with its
  node name, host, pid, slots (the pool's concurrency; with --autoscale, its maximum) and queues;
- renewed every ANVIL_WORKER_HEARTBEAT_S by a daemon thread, which also re-reads the queues
  (``celery control add_consumer`` changes them) and registers again if the row is gone;
- marked stopped at ``worker_shutdown``, after a warm shutdown let the running tests finish.

A killed worker leaves its row behind, to turn stale after 3 missed heartbeats. The database may be
unreachable at any of these moments: that is logged and the worker runs on (the heartbeat thread
keeps trying), since running tests matters more than being listed. Celery imports this module in
the worker (workers/celery_app.py, ``include``); the pool's child processes never send these signals.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session

from anvil import __version__
from anvil.domain.workers import WorkerProcess
from anvil.settings import get_settings
from db import workers as registry
from db.session import new_session

log = logging.getLogger("anvil.registry")


class Heartbeat:
    """The registry row of one worker process, and the thread that keeps it fresh."""

    def __init__(self, consumer: Any, *, interval_s: float) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="anvil-registry", daemon=True)
        self.failing = False
        self.registered = False

    def process(self) -> WorkerProcess:
        """This worker as it is now (Celery's consumer and its controller, the WorkController)."""
        controller = self.consumer.controller
        # The queues selected with -Q, kept up to date by add_consumer/cancel_consumer; in order.
        queues = tuple(self.consumer.app.amqp.queues.consume_from)
        return WorkerProcess(
            name=str(self.consumer.hostname),
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=int(getattr(controller, "max_concurrency", None) or controller.concurrency),
            queues=queues,
            version=__version__,
        )

    def register(self) -> None:
        self.registered = self._attempt(
            "register", lambda session: registry.register(session, worker=self.process())
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        self._attempt("mark stopped", lambda session: registry.stopped(session, worker=self.process()))

    def _run(self) -> None:
        while not self.done.wait(self.interval_s):
            if self.registered:
                self._attempt("heartbeat", self._beat)
            else:
                self.register()

    def _beat(self, session: Session) -> None:
        if not registry.heartbeat(session, worker=self.process()):
            log.warning(
                "worker registry: the row of %s was missing or held by another process of that name "
                "(two workers with one -n name?); registered it again",
                self.consumer.hostname,
            )

    def _attempt(self, what: str, work: Callable[[Session], object]) -> bool:
        """Run ``work(session)`` in a transaction; a failure is logged once until it works again."""
        try:
            with new_session() as session, session.begin():
                work(session)
        except Exception as exc:  # the database or anything else: the worker must go on running tests
            if not self.failing:
                again = "" if self.done.is_set() else "; trying again at every heartbeat"
                log.warning("worker registry: could not %s (%s)%s", what, exc, again)
            self.failing = True
            return False
        if self.failing:
            log.info("worker registry: %s works again", what)
        self.failing = False
        return True


_heartbeat: Heartbeat | None = None


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    if sender is None or _heartbeat is not None:
        return
    _heartbeat = Heartbeat(sender, interval_s=get_settings().worker_heartbeat_s)
    _heartbeat.register()
    _heartbeat.start()


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    global _heartbeat
    if _heartbeat is None:
        return
    _heartbeat.stop()
    _heartbeat = None
