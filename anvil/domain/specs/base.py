"""What every spec model shares: unknown keys refused (so typos never pass silently), argument and
workspace-name types, and model-level rules reported at the field they concern."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from anvil.domain.workspaces import WORKSPACE_NAME

Arg = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
WorkspaceName = Annotated[str, StringConstraints(pattern=WORKSPACE_NAME.pattern)]


class Strict(BaseModel):
    """A request or spec model that refuses keys it does not know."""

    model_config = ConfigDict(extra="forbid")


def field_error(model: str, field: str, message: str, *, kind: str = "spec_rule") -> ValidationError:
    """A model-level rule reported at the field it concerns, so the 422 names that field."""
    error = PydanticCustomError(kind, message)
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=(field,), input=None)]
    )
