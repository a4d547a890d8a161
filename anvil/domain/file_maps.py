"""File maps of changed-files selection, kept with cases and suites: ``{glob: [target, ...]}``.

``**`` crosses directories, ``*`` and ``?`` do not, a glob ending in ``/`` covers everything
below; a target is a test path prefix or ``tag:<t>``.
"""

from __future__ import annotations

import re
from typing import Any

from anvil.domain.rules import TAG_VALUE


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regular expression: ``**`` crosses directories, ``*`` and ``?`` do not; a
    pattern ending in ``/`` matches everything below that directory."""
    if pattern.endswith("/"):
        pattern += "**"
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_file_map(value: Any) -> dict[str, list[str]]:
    """A file map as stored: {glob: [target, ...]}, a target being ``tag:<t>`` or a path prefix of
    test keys ("tests/payments"). Raises ValueError naming the bad entry."""
    if not isinstance(value, dict):
        raise ValueError('file_map is an object: {"src/payments/**": ["tests/payments", "tag:billing"]}')
    if len(value) > 500:
        raise ValueError("file_map holds at most 500 globs")
    checked: dict[str, list[str]] = {}
    for glob, targets in value.items():
        if not isinstance(glob, str) or not 1 <= len(glob) <= 500 or glob.startswith("/") or "\x00" in glob:
            raise ValueError(f"file_map glob {glob!r}: a relative path pattern of 1-500 characters")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 100:
            raise ValueError(f"file_map[{glob!r}]: a list of 1-100 targets (tag:<t> or a test path prefix)")
        for target in targets:
            if not isinstance(target, str) or not 1 <= len(target) <= 500 or "\x00" in target:
                raise ValueError(f"file_map[{glob!r}]: target {target!r} is not a string of 1-500 characters")
            if target.startswith("tag:") and not TAG_VALUE.match(target[4:]):
                raise ValueError(f"file_map[{glob!r}]: target {target!r} names no valid tag")
            if target.startswith("/") or ".." in target.split("/"):
                raise ValueError(f"file_map[{glob!r}]: target {target!r} must be a relative test path prefix")
        checked[glob] = list(dict.fromkeys(targets))
    return checked


def under(key: str, prefix: str) -> bool:
    """Whether a test key (or file) lies under a path prefix: "tests/pay" holds "tests/pay/x.py::t"
    and "tests/pay.py::t[1]", not "tests/payments/x.py"."""
    if not key.startswith(prefix):
        return False
    rest = key[len(prefix) :]
    return not rest or prefix.endswith(("/", "::")) or rest[0] in "/:.[" or rest.startswith("::")
