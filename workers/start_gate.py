"""Test processes of shards start a few at a time on one host: at most one per CPU.

A pytest process spends its first half second or so on the CPU alone (the interpreter, pytest and
its plugins, collecting the plan's files) before its first test. When many shards of one run land
on a host with fewer cores at once, they all start together and every one of them waits for the
CPU: no test runs until all have started. Starting them a CPU's worth at a time lets the first
ones run tests while the others start, and work stealing hands the late starters less. A shard
holds its start slot until its process asks for its first test, ends, or ``HOLD_S`` passes (a
slow conftest must not hold the others back for long).

The slots are ``flock`` locks on files in a directory of the host's temporary directory, shared by
every worker process of the same user; the kernel drops a lock when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("anvil.worker")

HOLD_S = 5.0  # the longest a start keeps its slot
POLL_S = 0.02


class StartSlot:
    """A held slot (or none: the gate could not be used); ``release`` is safe to call repeatedly
    and from any thread."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file drops its flock


def gate_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"anvil-start-gate-{os.getuid()}"


def slots_of_host() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _try_lock(folder: Path, slots: int) -> int | None:
    for index in range(slots):
        fd = os.open(folder / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                continue
            raise
        return fd
    return None


@contextmanager
def start_slot(
    stop: threading.Event, *, slots: int | None = None, hold_s: float = HOLD_S, folder: Path | None = None
) -> Iterator[StartSlot]:
    """Wait (until ``stop``) for one of the host's start slots and hold it while the block runs,
    until released, or for ``hold_s`` at most."""
    folder = folder or gate_dir()
    began = time.monotonic()
    fd: int | None = None
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        count = slots or slots_of_host()
        while not stop.is_set():
            fd = _try_lock(folder, count)
            if fd is not None:
                break
            time.sleep(POLL_S)
    except OSError as exc:  # an unusable directory must not stop the test: start without the gate
        log.warning("start gate unavailable (%s): starting the test process at once", exc)
    slot = StartSlot(fd)
    slot.waited_s = time.monotonic() - began
    timer = threading.Timer(hold_s, slot.release)
    timer.daemon = True
    timer.start()
    try:
        yield slot
    finally:
        timer.cancel()
        with contextlib.suppress(OSError):
            slot.release()
