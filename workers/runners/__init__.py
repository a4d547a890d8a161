"""Runners turn a case snapshot into step records and one outcome. One module per kind."""

from __future__ import annotations

from collections.abc import Callable

from anvil.domain.steps import Outcome
from workers.runners.base import RunContext

Runner = Callable[[RunContext], Outcome]


def runner_for(kind: str) -> Runner:
    from workers.runners import bdd, generic, manual

    runners: dict[str, Runner] = {"generic": generic.run, "manual": manual.run, "bdd": bdd.run}
    try:
        return runners[kind]
    except KeyError:
        raise LookupError(f"no runner for test kind {kind!r} on this worker") from None
