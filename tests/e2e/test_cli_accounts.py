"""`anvil users …` (straight in the database) and `anvil tokens …` (over a real API), as a user runs them."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import Stack, StackFactory

GOOD_PASSWORD = "correct-horse-battery-staple"


def anvil(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("ANVIL_PASSWORD", "ANVIL_TOKEN", "ANVIL_API_URL")
    }
    return subprocess.run(
        anvil_argv(*args), env={**base, **env}, input=stdin or "", capture_output=True, text=True, timeout=60
    )


def assert_clear_error(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr, result.stderr
    for leak in ("Traceback", "$argon2", "sqlalchemy", GOOD_PASSWORD):
        assert leak not in result.stderr + result.stdout


@pytest.fixture
def db_env(fresh_database: str) -> dict[str, str]:
    return {"ANVIL_DATABASE_URL": fresh_database}


def test_a_long_or_odd_username_is_a_clear_error_without_a_traceback_or_a_hash(
    db_env: dict[str, str],
) -> None:
    for name in ("x" * 65, "", "two words", "semi;colon"):
        result = anvil("users", "create", name, "--password", GOOD_PASSWORD, env=db_env)
        assert_clear_error(result, "username: a username is 1 to 64 characters")


def test_weak_passwords_are_clear_errors(db_env: dict[str, str]) -> None:
    assert_clear_error(
        anvil("users", "create", "tess", "--password", "short", env=db_env), "at least 12 characters"
    )
    common = anvil("users", "create", "tess", env={**db_env, "ANVIL_PASSWORD": "password1234"})
    assert_clear_error(common, "most common passwords")
    no_password = anvil("users", "create", "tess", env=db_env)  # not a terminal, no ANVIL_PASSWORD
    assert_clear_error(no_password, "give --password or ANVIL_PASSWORD")


def test_create_list_set_role_deactivate_and_reset_password(db_env: dict[str, str]) -> None:
    created = anvil("users", "create", "tess", "--role", "tester", "--password", GOOD_PASSWORD, env=db_env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created tester tess (")
    assert_clear_error(
        anvil("users", "create", "tess", "--password", GOOD_PASSWORD, env=db_env), "already exists"
    )

    assert anvil("users", "set-role", "tess", "maintainer", env=db_env).returncode == 0
    assert anvil("users", "deactivate", "tess", env=db_env).returncode == 0
    listed = anvil("users", "list", env=db_env)
    assert listed.returncode == 0, listed.stderr
    [row] = [line.split() for line in listed.stdout.splitlines() if " tess " in f" {line} "]
    assert row[1:4] == ["tess", "maintainer", "no"]

    assert_clear_error(
        anvil("users", "reset-password", "tess", "--password", "abc", env=db_env), "12 characters"
    )
    reset = anvil(
        "users", "reset-password", "tess", env={**db_env, "ANVIL_PASSWORD": "another-good-passphrase"}
    )
    assert reset.returncode == 0 and "tokens are revoked" in reset.stdout
    assert_clear_error(anvil("users", "deactivate", "nobody", env=db_env), "no user named 'nobody'")
    assert_clear_error(anvil("users", "set-role", "tess", "root", env=db_env), "root")


def test_tokens_create_list_use_and_revoke_over_the_api(make_stack: StackFactory) -> None:
    stack: Stack = make_stack(workers=0, beat=False)
    admin = {"ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": str(stack.client.headers["Authorization"])[7:]}

    created = anvil("tokens", "create", "--name", "ci", "--role", "tester", "--expires", "30d", env=admin)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("anvil_") and "shown only now" in created.stderr
    assert_clear_error(anvil("tokens", "create", "--name", "ci", "--expires", "soon", env=admin), "90d")

    cases = httpx.get(f"{stack.api_url}/api/v1/test-cases", headers={"Authorization": f"Bearer {token}"})
    assert cases.status_code == 200, cases.text
    listed = anvil("tokens", "list", env=admin)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if " ci " in line]
    assert "tester" in row and "never" not in row.split("tester", 1)[1]  # expires and was used

    # The bot's own token cannot make more tokens.
    bot = {"ANVIL_API_URL": stack.api_url, "ANVIL_TOKEN": token}
    assert_clear_error(anvil("tokens", "create", "--name", "more", env=bot), "cannot create tokens")

    revoked = anvil("tokens", "revoke", "ci", env=admin)
    assert revoked.returncode == 0, revoked.stderr
    cases = httpx.get(f"{stack.api_url}/api/v1/test-cases", headers={"Authorization": f"Bearer {token}"})
    assert cases.status_code == 401
    assert_clear_error(anvil("tokens", "revoke", "ci", env=admin), "no API token named 'ci'")
