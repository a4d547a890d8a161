"""The test kinds: for each, the model its spec must match and the runner that executes it.

The API validates a case's spec with ``RUNNERS[kind].spec``; the worker runs it with the function
``RUNNERS[kind].runner`` names (workers/runners/, imported only by workers, so the API never
loads runner code). A new kind is a runner module with a ``run(ctx) -> Outcome`` function
(workers/runners/base.Runner), its spec model, and one line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from anvil.domain.specs.bdd import BddSpec
from anvil.domain.specs.generic import GenericSpec
from anvil.domain.specs.manual import ManualSpec
from anvil.domain.specs.pytest import PytestSpec
from anvil.errors import InvalidInput


@dataclass(frozen=True)
class Kind:
    name: str
    spec: type[BaseModel]
    runner: str  # "module:function", the worker's entry point for this kind


RUNNERS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("generic", GenericSpec, "workers.runners.generic:run"),
        Kind("pytest", PytestSpec, "workers.runners.pytest_runner:run"),
        Kind("bdd", BddSpec, "workers.runners.bdd:run"),
        Kind("manual", ManualSpec, "workers.runners.manual:run"),
    )
}

# The kinds as an enum, for the API's schema (its OpenAPI lists them) and the CLI's choices.
CaseKind = StrEnum("CaseKind", [(name.upper(), name) for name in RUNNERS])  # type: ignore[misc]


def validate_spec(kind: str, spec: Any) -> dict[str, Any]:
    """The spec normalised for storage; InvalidInput naming the offending field otherwise."""
    entry = RUNNERS.get(kind)
    if entry is None:
        raise InvalidInput(f"test kind {kind!r} is not supported by this server", field="body.kind")
    try:
        return entry.spec.model_validate(spec).model_dump(exclude_none=True)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(["body", "spec", *map(str, e["loc"])]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0]
        raise InvalidInput(
            f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        ) from exc


def upgrade_legacy(kind: str, spec: Any) -> tuple[str, Any]:
    """A pytest run used to be a ``generic`` spec with a ``pytest`` object instead of ``steps``;
    such a spec is taken as kind ``pytest`` (migration 0008 converted the stored ones)."""
    legacy = isinstance(spec, dict) and isinstance(spec.get("pytest"), dict) and "steps" not in spec
    if kind in ("generic", "pytest") and legacy:
        rest = {key: value for key, value in spec.items() if key != "pytest"}
        return "pytest", {**rest, **spec["pytest"]}
    return kind, spec
