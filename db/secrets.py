"""Test secrets: values tests need (a deploy token, a password), kept encrypted, named in specs.

A spec names a secret instead of holding its value: ``"env": {"TOKEN": {"secret": "deploy-token"}}``
(in a generic step's ``env``, a pytest or BDD spec's ``env``). The worker reads
and decrypts the value when it runs the test, gives it only to that test's processes, and redacts
it from what they print (workers/redact.py).

Values are encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key
derived by HKDF-SHA256 from ANVIL_SECRETS_KEY, a setting of its own (not the token-signing key).
The name is encrypted together with the value, so a ciphertext copied into another row does not
decrypt there. Storing and revealing need the key; listing and deleting do not.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import uuid
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text, cast, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anvil.errors import AnvilError, Conflict, InvalidInput, NotFound
from anvil.settings import Settings
from db.models import TestCase, TestSecret
from db.types import utcnow

# An environment variable's value: Linux refuses single strings above 128 KiB in exec.
MAX_VALUE_CHARS = 32 * 1024
KEY_INFO = b"anvil test secrets v1"
NOT_CONFIGURED = (
    "ANVIL_SECRETS_KEY (or ANVIL_SECRETS_KEY_FILE) must be set on this server to store test secrets "
    "(a key of its own, at least 32 characters, e.g. `openssl rand -hex 32`; not ANVIL_SECRET_KEY)"
)


class SecretsNotConfigured(AnvilError):
    status_code = 503
    title = "Test secrets are not configured"


class SecretUnavailable(Exception):
    """A secret a test names cannot be given to it: it is gone, or this key cannot decrypt it."""


class Reference(NamedTuple):
    field: str  # where in the spec, e.g. "steps.0.env.TOKEN"
    name: str  # the secret's name


# ---- encryption -------------------------------------------------------------------------------


def box_for(settings: Settings) -> Fernet:
    """The cipher of this installation's test secrets; SecretsNotConfigured without a key."""
    if settings.secrets_key is None:
        raise SecretsNotConfigured(NOT_CONFIGURED)
    return _box(settings.secrets_key.get_secret_value())


@functools.lru_cache(maxsize=4)
def _box(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(box: Fernet, *, name: str, value: str) -> str:
    return box.encrypt(json.dumps([name, value]).encode()).decode("ascii")


def decrypt(box: Fernet, *, name: str, token: str) -> str:
    try:
        stored_name, value = json.loads(box.decrypt(token.encode("ascii")))
    except InvalidToken:
        raise SecretUnavailable(
            f"test secret {name!r} cannot be decrypted with this worker's ANVIL_SECRETS_KEY "
            "(was it stored under another key?)"
        ) from None
    if stored_name != name:
        raise SecretUnavailable(f"test secret {name!r} holds the value of another secret; set it again")
    return str(value)


# ---- data access ------------------------------------------------------------------------------


def put_secret(
    session: Session, *, name: str, value: str, box: Fernet, actor: uuid.UUID | None
) -> tuple[TestSecret, bool]:
    """Create or replace the secret ``name``; returns it and whether it was created."""
    token = encrypt(box, name=name, value=value)
    now = utcnow()
    secret = session.scalar(select(TestSecret).where(TestSecret.name == name).with_for_update())
    if secret is not None:
        secret.value_encrypted, secret.updated_at, secret.updated_by = token, now, actor
        session.flush()
        return secret, False
    secret = TestSecret(
        id=uuid.uuid4(),
        name=name,
        value_encrypted=token,
        created_at=now,
        updated_at=now,
        created_by=actor,
        updated_by=actor,
    )
    session.add(secret)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"test secret {name!r} was created by another request just now; try again") from exc
    return secret, True


def list_secrets(session: Session) -> list[TestSecret]:
    return list(session.scalars(select(TestSecret).order_by(TestSecret.name)))


def get_secret(session: Session, *, name: str) -> TestSecret:
    secret = session.scalar(select(TestSecret).where(TestSecret.name == name))
    if secret is None:
        raise NotFound(f"there is no test secret named {name!r}", field="name")
    return secret


def delete_secret(session: Session, *, name: str) -> None:
    """Remove a secret no live test case names (Conflict naming the cases otherwise)."""
    secret = get_secret(session, name=name)
    users = cases_using(session, [name]).get(name)
    if users:
        shown = ", ".join(repr(case) for case in users[:20]) + (" …" if len(users) > 20 else "")
        raise Conflict(
            f"test secret {name!r} is named by {len(users)} test case(s): {shown}; "
            "change or delete them first",
            field="name",
            test_cases=users,
        )
    session.delete(secret)
    session.flush()


def missing_secrets(session: Session, names: Collection[str]) -> list[str]:
    """Those of ``names`` that are no stored secret."""
    if not names:
        return []
    found = set(session.scalars(select(TestSecret.name).where(TestSecret.name.in_(set(names)))))
    return sorted(set(names) - found)


def cases_using(session: Session, names: Collection[str]) -> dict[str, list[str]]:
    """The live test cases whose specs name each of ``names`` (secret -> case names)."""
    # Only specs whose JSON text mentions "secret" can name one; the rest is checked here.
    rows = session.execute(
        select(TestCase.name, TestCase.spec)
        .where(TestCase.deleted_at.is_(None), cast(TestCase.spec, Text).like('%"secret"%'))
        .order_by(TestCase.name)
    )
    wanted = set(names)
    using: dict[str, list[str]] = {}
    for case_name, spec in rows:
        for secret in sorted({ref.name for ref in references(spec)} & wanted):
            using.setdefault(secret, []).append(case_name)
    return using


def check_references(session: Session, spec: Mapping[str, Any], *, prefix: str = "body.spec") -> None:
    """InvalidInput naming the field of the first reference to a secret that does not exist."""
    refs = references(spec)
    missing = set(missing_secrets(session, {ref.name for ref in refs}))
    for ref in refs:
        if ref.name in missing:
            raise InvalidInput(
                f"{prefix}.{ref.field}: there is no test secret named {ref.name!r}; an admin creates it "
                f"with PUT /api/v1/secrets/{ref.name} (or `anvil secrets set {ref.name}`)",
                field=f"{prefix}.{ref.field}",
                secret=ref.name,
            )


def reveal(session: Session, *, names: Collection[str], box: Fernet | None) -> dict[str, str]:
    """The values of the secrets ``names`` (decrypted); SecretUnavailable when one cannot be had."""
    if not names:
        return {}
    if box is None:
        raise SecretUnavailable(
            f"the test needs secrets ({', '.join(sorted(names))}) but this worker has no "
            "ANVIL_SECRETS_KEY (or ANVIL_SECRETS_KEY_FILE) to decrypt them"
        )
    rows = {s.name: s for s in session.scalars(select(TestSecret).where(TestSecret.name.in_(set(names))))}
    gone = sorted(set(names) - set(rows))
    if gone:
        raise SecretUnavailable(
            f"test secret(s) {', '.join(repr(n) for n in gone)} named by the test no longer exist"
        )
    return {name: decrypt(box, name=name, token=row.value_encrypted) for name, row in rows.items()}


# ---- where specs name secrets -----------------------------------------------------------------


def _env_maps(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each env map of a spec, with its place: ``env`` (pytest, BDD), ``steps.N.env`` (generic)."""
    if isinstance(spec.get("env"), dict):
        yield "env", spec["env"]
    for index, step in enumerate(spec.get("steps") or []):
        if isinstance(step, dict) and isinstance(step.get("env"), dict):
            yield f"steps.{index}.env", step["env"]


def references(spec: Mapping[str, Any]) -> list[Reference]:
    """Every ``{"secret": name}`` value in the env maps of ``spec``, in order."""
    return [
        Reference(f"{where}.{variable}", value["secret"])
        for where, env in _env_maps(spec)
        for variable, value in env.items()
        if isinstance(value, dict) and "secret" in value
    ]


def with_values(spec: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``spec`` with each secret reference replaced by its value from ``values``."""
    resolved = copy.deepcopy(dict(spec))
    for _, env in _env_maps(resolved):
        for variable, value in env.items():
            if isinstance(value, dict) and "secret" in value:
                env[variable] = values[value["secret"]]
    return resolved
