"""What every spec model shares: unknown keys refused (so typos never pass silently), argument and
workspace-name types, and model-level rules reported at the field they concern."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainValidator, StringConstraints, ValidationError, WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from anvil.domain.workspaces import WORKSPACE_NAME

Arg = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
WorkspaceName = Annotated[str, StringConstraints(pattern=WORKSPACE_NAME.pattern)]
MAX_SHARDS = 64
SHARDS_DESCRIPTION = (
    f'split the run across workers: 1 to {MAX_SHARDS} shards, or "auto" (the worker slots consuming '
    "the execution's priority queue, each shard at least ANVIL_SHARD_MIN_TESTS tests); the tests are "
    "collected first and split by their recent durations"
)


def _shards(value: Any) -> int | str:
    if value == "auto" or (type(value) is int and 1 <= value <= MAX_SHARDS):
        return value  # type: ignore[no-any-return]
    raise PydanticCustomError("shards", f'shards must be a whole number from 1 to {MAX_SHARDS}, or "auto"')


Shards = Annotated[
    int | Literal["auto"],
    PlainValidator(_shards),
    WithJsonSchema({"oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_SHARDS}, {"const": "auto"}]}),
]


class Strict(BaseModel):
    """A request or spec model that refuses keys it does not know."""

    model_config = ConfigDict(extra="forbid")


def field_error(model: str, field: str, message: str, *, kind: str = "spec_rule") -> ValidationError:
    """A model-level rule reported at the field it concerns, so the 422 names that field."""
    error = PydanticCustomError(kind, message)
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=(field,), input=None)]
    )
