"""Reading a JSON-lines report that a test tool (our pytest plugin, our behave formatter) is still writing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("anvil.runner")


class JsonLinesTail:
    """Yields each complete line's JSON once; a half-written last line waits for the next read."""

    def __init__(self, path: Path, *, source: str) -> None:
        self.path, self.source = path, source
        self._offset = 0
        self._partial = b""

    def new_events(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                log.warning("ignoring a malformed line from %s: %r", self.source, line[:200])
