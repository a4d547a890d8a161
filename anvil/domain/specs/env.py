"""The ``env`` maps of specs: variable -> a plain value, or a reference to a test secret.

``"env": {"MODE": "fast", "TOKEN": {"secret": "deploy-token"}}``: MODE is stored in the spec and
shown to whoever reads the case; TOKEN's value is kept encrypted (db/secrets.py) and only the worker
running the test reads it. Whether a named secret exists is checked when the case is saved
(db.secrets.check_references), since that needs the database.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import StringConstraints, WithJsonSchema
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

# A test secret's name (db/secrets.py stores them).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RULE = "1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_VALUE_CHARS = 4096
SECRET_NAME = re.compile(NAME_PATTERN)


def _env_value(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise PydanticCustomError("env_value", "at most {max} characters", {"max": MAX_VALUE_CHARS})
        if "\x00" in value:
            raise PydanticCustomError("env_value", "an environment value cannot contain NUL characters")
        return value
    if isinstance(value, dict):
        name = value.get("secret")
        if set(value) != {"secret"} or not isinstance(name, str):
            raise PydanticCustomError(
                "secret_reference", 'a secret reference is {"secret": "<name>"} and nothing else'
            )
        if not SECRET_NAME.match(name):
            raise PydanticCustomError("secret_reference", "a secret name is {rule}", {"rule": NAME_RULE})
        return {"secret": name}
    raise PydanticCustomError(
        "env_value", 'an env value is a string, or {"secret": "<name>"} to use a test secret'
    )


EnvValue = Annotated[
    Any,
    PlainValidator(_env_value),
    WithJsonSchema(
        {
            "oneOf": [
                {
                    "type": "string",
                    "maxLength": MAX_VALUE_CHARS,
                    "description": "a plain value, shown to readers of the case",
                },
                {
                    "type": "object",
                    "properties": {"secret": {"type": "string", "pattern": NAME_PATTERN}},
                    "required": ["secret"],
                    "additionalProperties": False,
                    "description": "a test secret (/api/v1/secrets), given to the test, never shown",
                },
            ]
        }
    ),
]
Env = dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], EnvValue]


ENV_DESCRIPTION = 'environment variables: a value, or {"secret": "<name>"} to use a test secret'


def no_anvil_variables(env: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refuses ANVIL_* variables (the worker sets those)."""
    reserved = [k for k in env or {} if k.startswith("ANVIL_")]
    if reserved:
        raise ValueError(f"ANVIL_* variables are reserved: {', '.join(reserved)}")
    return env
