"""A shard's tests, handed to its pytest process a few at a time (work stealing); to a BDD shard,
a batch per behave run (workers/runners/bdd_handout.py).

The worker listens on a Unix socket in the run's private directory; the pytest plugin
(``--anvil-handout``, workers/pytest_plugin.py) asks it for the next test before running each
one, and the worker takes tests from the plan in PostgreSQL (db/shard_tests.take): first its own,
then unstarted ones of the shard with the most planned time left. The test process never sees
database credentials, only node ids. The protocol is a line each way: ``next`` -> the next node
ids, tab-separated (a trip's worth: one line per trip to the database, not per test), or an
empty line when nothing is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.models import Execution
from db.session import new_session
from db.shard_tests import BATCH, TRIP_S, confirm_plan, give_back, plan_keys, resume, take

log = logging.getLogger("anvil.worker")
T = TypeVar("T")


@dataclass
class Handout:
    parent_id: uuid.UUID
    shard_id: uuid.UUID
    attempt: int
    index: int
    plan: list[str]  # every test of the plan, in collection order (what the shard collects)
    carried: list[dict[str, Any]]  # steps earlier attempts finished (name, status, details)
    budget_s: float  # how long to ride out a database outage before giving up
    # The plan was made from an earlier run's test list: this shard's pytest collects the case's
    # own tests (into ``collected``, a file) and its first ask confirms the plan by them.
    collects: bool = False
    collected: Path | None = None
    taken: list[str] = field(default_factory=list)
    handed: list[str] = field(default_factory=list)  # given to the test process, in order
    failed: str | None = None  # why tests could not be taken (the shard then ends in ERROR)
    _buffer: deque[str] = field(default_factory=deque)
    _exhausted: bool = False
    _asked: float | None = None
    _asks: int = 0
    _handed: int = 0  # tests given at the last ask
    _pace: float | None = None  # seconds per test, as seen (a moving average)
    _pending: Future[list[str]] | None = None  # the next batch, being taken

    def next(self) -> list[str]:
        """The next tests to run, in order: all the worker holds now (a trip's worth, taken from
        the plan); none when every test of the plan is taken."""
        now = time.monotonic()
        self._asks += 1
        if self._asks > 2 and self._asked is not None and self._handed:
            # pytest asks again when it needs the test after the last one it was given, while
            # that one is about to run: the gap is about one test per test handed. (Its first two
            # asks may come back to back: the first test, and the one after it.)
            gap = (now - self._asked) / self._handed
            self._pace = gap if self._pace is None else 0.7 * self._pace + 0.3 * gap
        self._asked = now
        if self.collects and self._asks == 1:
            self._confirm()
        if not self._buffer and not self._exhausted and self.failed is None:
            pending, self._pending = self._pending, None
            got = pending.result() if pending is not None else self._take()
            self._exhausted = not got
            self._buffer.extend(got)
            self.taken.extend(got)
        keys = list(self._buffer)
        self._buffer.clear()
        self.handed.extend(keys)
        self._handed = len(keys)
        if keys and not self._exhausted and self._pending is None:
            # The next trip to the database while these tests run: pytest asks again at their end.
            self._pending = _prefetcher().submit(self._take)
        return keys

    def batch(self, trip_s: float, most: int) -> list[str]:
        """The next tests to run at once, up to ``trip_s`` of planned time (a BDD shard runs behave
        once per batch: its run is fixed when it starts); none when every test is taken."""
        if self.failed is not None:
            return []
        whose, none = {**self._whose(), "at_least": 1}, list[str]()
        got = self._retrying(
            lambda session: take(session, self.parent_id, **whose, trip_s=trip_s, most=most), none
        )
        self.taken.extend(got)
        return got

    def give_back_unstarted(self, ran: set[str]) -> None:
        """Tests taken but never run here (pytest stopped early: -x, a crash, a cancel; or did not
        collect them) go back to the plan, for the shards still running. ``ran``: the tests this
        attempt recorded a step for."""
        pending, self._pending = self._pending, None
        fetched = pending.result() if pending is not None else []
        left = list(self._buffer) + fetched + [key for key in self.handed if key not in ran]
        self._buffer.clear()
        if not left:
            return
        gone = set(left)
        self.taken = [key for key in self.taken if key not in gone]
        try:
            with new_session() as session, session.begin():
                give_back(session, self.shard_id, keys=left)
        except OperationalError as exc:  # they stay taken: the shard's retry runs them
            log.warning("could not give back %d tests of %s: %s", len(left), self.shard_id, exc)
            self.taken.extend(left)

    def _whose(self) -> dict[str, Any]:
        # Quick tests come several per trip to the database, by the pace seen so far.
        at_least = 1 if not self._pace else min(BATCH, max(1, int(TRIP_S / max(self._pace, 1e-3))))
        return {"shard_id": self.shard_id, "attempt": self.attempt, "index": self.index, "at_least": at_least}

    def _take(self) -> list[str]:
        return self._retrying(lambda session: take(session, self.parent_id, **self._whose()), [])

    def _confirm(self) -> None:
        assert self.collected is not None
        keys = [line for line in self.collected.read_text("utf-8").splitlines() if line]

        def confirm(session: Session) -> bool:
            return confirm_plan(session, self.parent_id, keys, shard_id=self.shard_id, attempt=self.attempt)

        if self._retrying(confirm, False):
            log.info(
                "shard %s confirmed the plan of %s: %d tests collected", self.index, self.parent_id, len(keys)
            )

    def _retrying(self, work: Callable[[Session], T], failed: T) -> T:
        """``work`` in a transaction, tried again through a database outage of up to budget_s."""
        deadline = time.monotonic() + self.budget_s
        delay = 0.1
        while True:
            try:
                with new_session() as session, session.begin():
                    return work(session)
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    self.failed = f"could not take tests from the plan: {exc.orig or exc}"
                    return failed
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


_prefetchers: dict[int, ThreadPoolExecutor] = {}


def _prefetcher() -> ThreadPoolExecutor:
    """This process's threads for taking the next batch ahead (one per process id: a forked pool
    process must not use its parent's threads)."""
    pid = os.getpid()
    if pid not in _prefetchers:
        _prefetchers[pid] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="handout")
    return _prefetchers[pid]


def prepare(
    execution_id: uuid.UUID, attempt: int, selection: dict[str, Any], *, budget_s: float, carries: bool = True
) -> Handout | None:
    """The handout of a shard that takes its tests as it goes, with what its earlier attempts
    finished carried over (``carries``: pytest's, whose steps are its tests); None when this
    attempt no longer holds the shard."""
    with new_session() as session, session.begin():
        carried = resume(session, execution_id, attempt=attempt, carry=carries)
        if carried is None:
            return None
        parent_id = session.get_one(Execution, execution_id).parent_execution_id
        assert parent_id is not None
        plan = plan_keys(session, parent_id)
    return Handout(
        parent_id=parent_id,
        shard_id=execution_id,
        attempt=attempt,
        index=int(selection["shard"]["index"]),
        plan=plan,
        collects=bool(selection["shard"].get("collects")),
        carried=carried,
        budget_s=budget_s,
    )


@contextmanager
def serving(handout: Handout, path: Path, stop: threading.Event) -> Iterator[Path]:
    """Answer the test process's requests on a Unix socket at ``path`` while the block runs."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    # The directory is the test's own (0700, the sandbox user's): only it and the worker get here.
    os.chmod(path, 0o666)
    server.listen(2)
    server.settimeout(0.2)
    done = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8", newline="\n") as lines:
            for line in lines:
                if line.strip() != "next" or stop.is_set():
                    break
                # Node ids never hold a tab or a newline (pytest escapes them in parameter ids).
                lines.write("\t".join(handout.next()) + "\n")
                lines.flush()

    def loop() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            try:
                answer(conn)
            except OSError as exc:  # the test process went away mid-line
                log.info("handout connection of %s ended: %s", handout.shard_id, exc)

    thread = threading.Thread(target=loop, name="handout", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once
        server.close()
        thread.join(timeout=5)
