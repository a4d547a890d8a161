"""The CLI's live-event client without sockets: the SSE line parser and a suite's progress tally."""

from __future__ import annotations

import pytest

from anvil.cli.follow import SuiteTally
from anvil.cli.sse import SseEvent, SseParser


def parse(text: str, parser: SseParser | None = None) -> list[SseEvent]:
    parser = parser or SseParser()
    events = [parser.feed(line) for line in text.split("\n")]
    return [e for e in events if e is not None]


def test_events_as_anvil_sends_them() -> None:
    parser = SseParser()
    text = (
        "retry: 2000\n\n"
        'id: 1\nevent: transition\ndata: {"to":"QUEUED"}\n\n'
        ": keep-alive\n\n"
        'id: 2\nevent: step\ndata: {"seq":1}\n\n'
        'event: end\ndata: {"status":"PASSED"}\n\n'
    )
    events = parse(text, parser)
    assert [(e.event, e.id, e.json()) for e in events] == [
        ("transition", "1", {"to": "QUEUED"}),
        ("step", "2", {"seq": 1}),
        ("end", "2", {"status": "PASSED"}),  # no id of its own: Last-Event-ID stays at 2
    ]
    assert parser.retry_ms == 2000 and parser.last_event_id == "2"


@pytest.mark.parametrize(
    ("text", "event", "data"),
    [
        ("data: a\ndata: b\n\n", "message", "a\nb"),  # data lines join with newlines
        ("data:no space\n\n", "message", "no space"),
        ("data:  two spaces\n\n", "message", " two spaces"),  # only one space is removed
        ("data\n\n", "message", ""),  # a field without a colon has an empty value
        ("event: x\nfoo: bar\ndata: y\n\n", "x", "y"),  # unknown fields are ignored
        (": just a comment\ndata: z\n\n", "message", "z"),
    ],
)
def test_field_rules(text: str, event: str, data: str) -> None:
    [parsed] = parse(text)
    assert (parsed.event, parsed.data) == (event, data)


def test_no_data_no_event_but_the_id_still_counts() -> None:
    parser = SseParser()
    assert parse("id: 7\n\nevent: lonely\n\n", parser) == []
    assert parser.last_event_id == "7"
    # The event type did not leak into the next event.
    [event] = parse("data: x\n\n", parser)
    assert event.event == "message" and event.id == "7"


def test_bad_retry_and_nul_ids_are_ignored() -> None:
    parser = SseParser()
    parse("retry: soon\nid: 3\x004\ndata: x\n\nretry: ٣\n\n", parser)
    assert parser.retry_ms is None and parser.last_event_id == ""


def test_a_reconnect_drops_the_event_cut_off_by_the_old_connection() -> None:
    parser = SseParser()
    parse("id: 5\nevent: step\ndata: half", parser)  # the connection broke here
    parser.reset()
    [event] = parse("id: 5\nevent: step\ndata: whole\n\n", parser)
    assert (event.event, event.data, event.id) == ("step", "whole", "5")


def test_suite_tally_counts_a_retried_member_once_when_its_retry_ends() -> None:
    tally = SuiteTally(total=3)
    for member in ("a", "b", "c"):
        tally.record(member, "QUEUED")
    tally.record("a", "RUNNING")
    tally.record("a", "PASSED")
    tally.record("b", "RUNNING")
    tally.record("b", "FAILED")
    assert (tally.done, tally.failures) == (2, 1)
    tally.record("b", "RETRYING")  # same transaction: the failure is not final
    tally.record("b2", "SCHEDULED")
    assert (tally.done, tally.failures) == (1, 0)
    tally.record("b2", "QUEUED")
    tally.record("b2", "RUNNING")
    tally.record("b2", "PASSED")
    tally.record("c", "CANCELLED")
    assert (tally.done, tally.failures) == (3, 0)


def test_suite_tally_never_shows_more_done_than_total() -> None:
    tally = SuiteTally(total=1)
    tally.record("a", "PASSED")
    tally.record("extra", "PASSED")  # e.g. a person's follow-up run hanging in the tree
    assert tally.done == 1
