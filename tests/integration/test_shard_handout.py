"""A shard's handout on PostgreSQL, over its real Unix socket: what the test process is given, a
trip's worth per line, and what goes back to the plan when it stops early."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ShardTest
from tests.integration.test_shards import KEYS, claim, index_of, planned_parent, split
from workers.handout import prepare, serving


def asking(path: Path) -> tuple[socket.socket, TextIO]:
    """A connection as the pytest plugin makes it (both must be closed for the worker to see EOF)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(path))
    return conn, conn.makefile("rw", encoding="utf-8", newline="\n")


def ask(lines: TextIO) -> list[str]:
    lines.write("next\n")
    lines.flush()
    answer = lines.readline().rstrip("\n")
    return answer.split("\t") if answer else []


def taken_by(session: Session, shard_id: uuid.UUID) -> list[str]:
    with session.begin():
        return list(session.scalars(select(ShardTest.key).where(ShardTest.taken_by == shard_id)))


def test_the_test_process_gets_a_trips_worth_per_ask_and_what_it_did_not_run_goes_back(
    session: Session, tmp_path: Path
) -> None:
    parent_id, attempt = planned_parent(session)
    shard_id = split(session, parent_id, attempt)[0]
    held = claim(session, shard_id)
    shard = {"shard": {"index": index_of(shard_id), "of": 2, "steal": True}}
    handout = prepare(shard_id, held, shard, budget_s=5.0)
    assert handout is not None and handout.plan == KEYS

    stop = threading.Event()
    with serving(handout, tmp_path / "handout.sock", stop) as path:
        conn, lines = asking(path)
        with conn, lines:
            first = ask(lines)
            second = ask(lines)
    # No history: 1 s planned per test, more than a trip's 0.25 s, so one test per trip at first;
    # in the plan's order, and the shard's own (runs of two neighbours: 0, 1, then 4, 5, ...).
    assert first == [KEYS[0]] and second == [KEYS[1]]
    assert handout.handed == first + second

    # pytest stopped after running the first test only: the second, and the batch taken ahead
    # while it ran, go back to the plan for the other shard.
    handout.give_back_unstarted(ran={KEYS[0]})
    assert taken_by(session, shard_id) == [KEYS[0]]
    assert handout.taken == [KEYS[0]]


def test_a_quick_pace_brings_several_tests_per_ask(session: Session, tmp_path: Path) -> None:
    parent_id, attempt = planned_parent(session)
    shard_id = split(session, parent_id, attempt)[1]
    held = claim(session, shard_id)
    handout = prepare(
        shard_id, held, {"shard": {"index": index_of(shard_id), "of": 2, "steal": True}}, budget_s=5.0
    )
    assert handout is not None
    stop = threading.Event()
    given: list[list[str]] = []
    with serving(handout, tmp_path / "handout.sock", stop) as path:
        conn, lines = asking(path)
        with conn, lines:
            while batch := ask(lines):  # as fast as it can: the pace seen is well under a trip
                given.append(batch)
    handed = [key for batch in given for key in batch]
    assert sorted(handed) == sorted(KEYS)  # its own 20, then the other shard's 20 (stolen)
    assert len(set(handed)) == len(handed)
    assert max(len(batch) for batch in given) > 1 and len(given) < len(KEYS)
    handout.give_back_unstarted(ran=set(handed))
    assert sorted(taken_by(session, shard_id)) == sorted(KEYS)
