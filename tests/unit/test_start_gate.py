"""The host's start slots for shards' test processes (workers/start_gate.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from workers.start_gate import start_slot


def _second_start(
    folder: Path, stop: threading.Event, entered: list[float], hold_s: float = 5.0
) -> threading.Thread:
    def wait() -> None:
        with start_slot(stop, slots=1, folder=folder, hold_s=hold_s):
            entered.append(time.monotonic())

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def test_a_start_waits_until_the_holder_asks_for_its_first_test(tmp_path: Path) -> None:
    stop, entered = threading.Event(), list[float]()
    with start_slot(stop, slots=1, folder=tmp_path) as first:
        assert first.waited_s < 0.5
        second = _second_start(tmp_path, stop, entered)
        time.sleep(0.3)
        assert entered == []  # the only slot is held
        released = time.monotonic()
        first.release()
        second.join(timeout=5)
        assert entered and entered[0] >= released
        first.release()  # releasing twice (first ask, then the end of the run) is harmless


def test_as_many_start_at_once_as_there_are_slots(tmp_path: Path) -> None:
    stop = threading.Event()
    with start_slot(stop, slots=2, folder=tmp_path) as one, start_slot(stop, slots=2, folder=tmp_path) as two:
        assert one.waited_s < 0.5 and two.waited_s < 0.5
        entered: list[float] = []
        third = _second_start(tmp_path, stop, entered)
        time.sleep(0.3)
        assert entered == []
    third.join(timeout=5)
    assert entered


def test_a_slow_start_lets_the_next_one_go_after_the_hold_limit(tmp_path: Path) -> None:
    stop, entered = threading.Event(), list[float]()
    with start_slot(stop, slots=1, folder=tmp_path, hold_s=0.5):
        began = time.monotonic()
        second = _second_start(tmp_path, stop, entered)
        second.join(timeout=5)
        assert entered and 0.4 <= entered[0] - began < 3


def test_a_stop_ends_the_wait(tmp_path: Path) -> None:
    stop, entered = threading.Event(), list[float]()
    with start_slot(stop, slots=1, folder=tmp_path):
        second = _second_start(tmp_path, stop, entered)
        time.sleep(0.2)
        stop.set()
        second.join(timeout=5)
        assert entered  # it went on (to a run that stops at once) without the slot
