"""Manual specs (kind ``manual``): instructions and steps a person performs and reports on."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from anvil.domain.specs.base import Strict


class ManualStep(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    expected: Annotated[str, StringConstraints(max_length=5000)] | None = None


class ManualSpec(Strict):
    instructions: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    steps: list[ManualStep] = Field(min_length=1, max_length=500)
