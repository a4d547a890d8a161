"""Windows of statistics as a table: ``30d``, ``12h``, ``2w`` or the last N runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil.domain.windows import Window, days, parse_window
from anvil.errors import InvalidInput

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULT = days(30)


@pytest.mark.parametrize(
    ("text", "runs", "window", "label", "since"),
    [
        (None, None, DEFAULT, "30d", NOW - timedelta(days=30)),
        ("30d", None, Window(span=timedelta(days=30)), "30d", NOW - timedelta(days=30)),
        ("12h", None, Window(span=timedelta(hours=12)), "12h", NOW - timedelta(hours=12)),
        ("36h", None, Window(span=timedelta(hours=36)), "36h", NOW - timedelta(hours=36)),
        ("2w", None, Window(span=timedelta(days=14)), "14d", NOW - timedelta(days=14)),
        (" 7D ", None, Window(span=timedelta(days=7)), "7d", NOW - timedelta(days=7)),
        ("3650d", None, Window(span=timedelta(days=3650)), "3650d", NOW - timedelta(days=3650)),
        (None, 20, Window(runs=20), "last 20 runs", None),
    ],
)
def test_parse(
    text: str | None, runs: int | None, window: Window, label: str, since: datetime | None
) -> None:
    parsed = parse_window(text, runs, default=DEFAULT)
    assert parsed == window
    assert parsed.label == label
    assert parsed.since(NOW) == since


@pytest.mark.parametrize(
    ("text", "runs", "field", "message"),
    [
        ("30", None, "query.window", "not a span like 30d"),
        ("d", None, "query.window", "not a span"),
        ("30m", None, "query.window", "not a span"),
        ("-3d", None, "query.window", "not a span"),
        ("1.5d", None, "query.window", "not a span"),
        ("", None, "query.window", "not a span"),
        ("0d", None, "query.window", "longer than 0"),
        ("3651d", None, "query.window", "at most 3650d"),
        ("30d", 5, "query.window", "not both"),
        (None, 0, "query.runs", "between 1 and"),
        (None, 10_001, "query.runs", "between 1 and"),
    ],
)
def test_refused_naming_the_parameter(text: str | None, runs: int | None, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse_window(text, runs, default=DEFAULT)
    assert caught.value.field == field
