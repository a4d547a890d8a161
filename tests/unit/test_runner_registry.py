"""The runner registry: every kind has a spec model and a runner the worker can load, and the
API's vocabulary of kinds is the registry's."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from anvil.domain.runners import RUNNERS, CaseKind, validate_spec
from anvil.domain.specs.base import Strict
from anvil.errors import InvalidInput
from workers.runners import runner_for


def test_the_kinds_the_api_offers_are_the_registry_s() -> None:
    assert [kind.value for kind in CaseKind] == list(RUNNERS)
    assert set(RUNNERS) >= {"generic", "pytest", "bdd", "manual"}


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_each_kind_has_a_strict_spec_and_a_loadable_runner(kind: str) -> None:
    entry = RUNNERS[kind]
    assert entry.name == kind
    assert issubclass(entry.spec, BaseModel) and issubclass(entry.spec, Strict), (
        "unknown keys must be refused"
    )
    runner = runner_for(kind)
    assert runner.__module__ == entry.runner.partition(":")[0]
    # What the Runner protocol says: one positional argument, the RunContext.
    assert list(inspect.signature(runner).parameters) == ["ctx"]


def test_an_unknown_kind_is_refused_by_the_api_and_the_worker() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_spec("cucumber", {})
    assert info.value.field == "body.kind"
    with pytest.raises(LookupError, match="no runner for test kind 'cucumber'"):
        runner_for("cucumber")
