"""Server-Sent Events from the API: the text/event-stream format, and a stream that survives drops.

GET /api/v1/executions/{id}/events sends ``id: <seq>``, ``event: transition|step`` and
``data: <json>`` per event, then a last ``event: end`` without an id. A dropped connection, a
restarting API or a 503 is ridden out for up to RECONNECT_GRACE_S: the client reconnects with
Last-Event-ID and the server replays exactly what it missed, so nothing is shown twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from anvil.cli.http import Api, ApiError

# Without an event or a keep-alive from the API for this long, give up.
RECONNECT_GRACE_S = 15.0
# The server sends a keep-alive comment every 15 s while nothing happens.
READ_TIMEOUT_S = 45.0
# Reconnection delay when the server did not say (``retry:``), and the most we wait between tries.
DEFAULT_RETRY_MS = 1000
MAX_RETRY_MS = 3000


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise ApiError(f"the event stream sent a {self.event!r} event that is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ApiError(f"the event stream sent a {self.event!r} event that is not a JSON object")
        return value


@dataclass
class SseParser:
    """The text/event-stream format (HTML Living Standard, "server-sent events"), one line at a time.

    Fields are ``name: value`` (one optional space after the colon); several ``data`` lines join with
    newlines; a blank line dispatches the event; lines starting with ``:`` are comments (keep-alives);
    ``id`` persists across events and is what a reconnect sends as Last-Event-ID; ``retry`` is the
    reconnection delay in milliseconds. Unknown fields are ignored.
    """

    last_event_id: str = ""
    retry_ms: int | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line break); returns the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def reset(self) -> None:
        """A new connection: an event cut off by the old one is dropped (the server sends it again)."""
        self._data, self._event = [], ""

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self.reset()
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self.last_event_id or None)


def event_stream(api: Api, execution_id: str, *, grace_s: float = RECONNECT_GRACE_S) -> Iterator[SseEvent]:
    """Every event of the execution's stream, in order and each once, up to and including ``end``.

    Reconnects with Last-Event-ID after a dropped connection or a retryable error (503, API
    unreachable) until ``grace_s`` passed without hearing from the API; then raises ApiError.
    """
    parser = SseParser()
    path = f"/api/v1/executions/{execution_id}/events"
    trouble_since: float | None = None
    while True:
        headers = {"Accept": "text/event-stream"}
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
        parser.reset()
        try:
            with api.stream(path, headers=headers, read_timeout_s=READ_TIMEOUT_S) as response:
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None or line.startswith(":"):
                        trouble_since = None  # news or a keep-alive: the stream works again
                    if event is not None:
                        yield event
                        if event.event == "end":
                            return
            problem = "the event stream ended before the execution finished"
        except ApiError as exc:
            if not exc.retryable:
                raise
            problem = str(exc)
        now = time.monotonic()
        trouble_since = trouble_since or now
        if now - trouble_since > grace_s:
            raise ApiError(f"lost the live events of execution {execution_id} for {grace_s:g}s: {problem}")
        time.sleep(min(parser.retry_ms or DEFAULT_RETRY_MS, MAX_RETRY_MS) / 1000)
