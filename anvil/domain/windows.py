"""The window statistics and flaky detection look at: a span of time (``30d``, ``12h``, ``2w``) or
the last N runs in scope. Pure: parsing and the start of a span given ``now``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from anvil.errors import InvalidInput

UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_SPAN = timedelta(days=3650)
MAX_RUNS = 10_000
_SPAN = re.compile(r"(\d{1,6})([hdw])")


@dataclass(frozen=True)
class Window:
    """``span`` (results recorded in the last span before now) or ``runs`` (the last N runs)."""

    span: timedelta | None = None
    runs: int | None = None

    def since(self, now: datetime) -> datetime | None:
        return now - self.span if self.span is not None else None

    @property
    def label(self) -> str:
        if self.runs is not None:
            return f"last {self.runs} runs"
        assert self.span is not None
        hours = int(self.span.total_seconds() // 3600)
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def days(n: int) -> Window:
    return Window(span=timedelta(days=n))


def parse_window(
    text: str | None, runs: int | None = None, *, default: Window, field: str = "query.window"
) -> Window:
    """``30d`` / ``12h`` / ``2w``, or ``runs`` (the last N runs); neither: ``default``.

    Refuses both at once, a zero or unknown unit and spans beyond ten years, naming the parameter.
    """
    if text is not None and runs is not None:
        raise InvalidInput("give either window (e.g. 30d) or runs (the last N runs), not both", field=field)
    if runs is not None:
        if not 1 <= runs <= MAX_RUNS:
            raise InvalidInput(f"runs must be between 1 and {MAX_RUNS}", field="query.runs")
        return Window(runs=runs)
    if text is None:
        return default
    match = _SPAN.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInput(
            f"window {text!r} is not a span like 30d, 12h or 2w (a number, then h, d or w)", field=field
        )
    span = int(match.group(1)) * UNITS[match.group(2)]
    if not timedelta(0) < span <= MAX_SPAN:
        raise InvalidInput(f"window {text!r} must be longer than 0 and at most 3650d", field=field)
    return Window(span=span)
