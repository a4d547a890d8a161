"""Runners turn a case snapshot into step records and one outcome, one module per kind.

Which module runs which kind is listed once, in anvil/domain/runners.RUNNERS.
"""

from __future__ import annotations

import functools
import importlib

from anvil.domain.runners import RUNNERS
from workers.runners.base import Runner


@functools.cache
def runner_for(kind: str) -> Runner:
    entry = RUNNERS.get(kind)
    if entry is None:
        raise LookupError(f"no runner for test kind {kind!r} on this worker")
    module, _, function = entry.runner.partition(":")
    runner: Runner = getattr(importlib.import_module(module), function)
    return runner
