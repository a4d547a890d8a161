"""Users and roles. Passwords are stored as argon2 hashes.

The rules for new usernames and passwords (``username_problem``, ``password_problem``) are applied
where people choose them: the API and `anvil users`. Changing a user's password, role or active
flag raises their ``token_generation``, which revokes the access tokens issued before.
"""

from __future__ import annotations

import re
import uuid
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from anvil.domain.enums import Role
from anvil.errors import Conflict, InvalidInput
from db.models import User

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = _hasher.hash("anvil-no-such-user")

USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
PASSWORD_MIN = 12
PASSWORD_MAX = 256  # argon2 hashes any length; a bound keeps a login request cheap


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a new user's name, or None."""
    if not USERNAME.fullmatch(username):
        return (
            "a username is 1 to 64 characters of letters, digits and . _ @ - "
            f"(got {len(username)} characters)"
        )
    return None


@cache
def _common_passwords() -> frozenset[str]:
    text = files("db").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be chosen, or None: too short or long, one character repeated,
    or one of the common passwords (also with digits or symbols added at its end)."""
    if len(password) < PASSWORD_MIN:
        return f"a password needs at least {PASSWORD_MIN} characters (got {len(password)})"
    if len(password) > PASSWORD_MAX:
        return f"a password may have at most {PASSWORD_MAX} characters"
    lowered = password.lower()
    base = lowered.rstrip("0123456789!@#$%^&*()_+-=.,;:?~ ")
    if len(set(lowered)) == 1 or lowered in _common_passwords() or base in _common_passwords():
        return "this password is one of the most common passwords; choose another one"
    return None


def check_new_account(*, username: str | None = None, password: str | None = None) -> None:
    """InvalidInput naming the field when a chosen username or password breaks the rules."""
    if username is not None and (problem := username_problem(username)):
        raise InvalidInput(problem, field="username")
    if password is not None and (problem := password_problem(password)):
        raise InvalidInput(problem, field="password")


def create_user(session: Session, *, username: str, password: str, role: Role) -> User:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists", field="username")
    user = User(id=uuid.uuid4(), username=username, password_hash=_hasher.hash(password), role=role.value)
    session.add(user)
    session.flush()
    return user


def password_matches(user: User | None, password: str) -> bool:
    """Whether ``user`` is active and ``password`` is theirs. An unknown user costs the same hash
    check (a dummy one), so timing does not tell which usernames exist. Needs no session: callers
    run it (about 150 ms of CPU) after their read has given its connection back."""
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.is_active


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def get_user(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def update_user(
    session: Session,
    *,
    user: User,
    role: Role | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    """Change what is given; a change of any of them revokes the user's access tokens. Refuses
    (Conflict) to demote or deactivate the last active admin, which would lock everyone out."""
    changed = False
    if role is not None and role.value != user.role:
        if user.role == Role.ADMIN.value:
            _keep_an_admin(session, user=user, change="change the role of")
        user.role = role.value
        changed = True
    if is_active is not None and is_active != user.is_active:
        if not is_active and user.role == Role.ADMIN.value:
            _keep_an_admin(session, user=user, change="deactivate")
        user.is_active = is_active
        changed = True
    if password is not None:
        user.password_hash = _hasher.hash(password)
        changed = True
    if changed:
        # In SQL, so two concurrent changes both count.
        session.execute(
            update(User).where(User.id == user.id).values(token_generation=User.token_generation + 1)
        )
        session.flush()
        session.refresh(user)
    return user


def _keep_an_admin(session: Session, *, user: User, change: str) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN.value, User.is_active.is_(True), User.id != user.id)
    )
    if not others:
        raise Conflict(f"cannot {change} {user.username}: it is the last active admin")
