"""What a case may ask of the sandbox its tests run in: resource limits and network access."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from anvil.domain.specs.base import Strict
from anvil.settings import get_settings


class TestLimits(Strict):
    """Per-test resource limits; each unset one is the worker's default (ANVIL_SANDBOX_*)."""

    __test__ = False  # not a pytest test class

    memory_mb: StrictInt | None = Field(default=None, ge=16, description="address space, MiB")
    processes: StrictInt | None = Field(default=None, ge=1, description="processes of the sandbox user")
    cpu_s: StrictInt | None = Field(default=None, ge=1, description="CPU time per process, seconds")
    file_size_mb: StrictInt | None = Field(default=None, ge=1, description="largest file written, MiB")

    @model_validator(mode="after")
    def _within_maxima(self) -> TestLimits:
        settings = get_settings()
        for key in ("memory_mb", "processes", "cpu_s", "file_size_mb"):
            value, ceiling = getattr(self, key), getattr(settings, f"sandbox_{key}_max")
            if value is not None and value > ceiling:
                raise PydanticCustomError(
                    "limit_too_high",
                    "{key} is {value}, above this server's maximum of {ceiling} (ANVIL_SANDBOX_{upper}_MAX)",
                    {"key": key, "value": value, "ceiling": ceiling, "upper": key.upper()},
                )
        return self


class SandboxOptions(BaseModel):
    """Fields every automated spec (commands, pytest, BDD) accepts."""

    limits: TestLimits | None = Field(default=None, description="resource limits of each test process")
    network: StrictBool | None = Field(
        default=None, description="false cuts the test off the network (loopback only); default true"
    )
