"""Test secrets without a database: env references in specs, encryption, the key setting, `anvil dev`."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from anvil.cli.bootstrap import secrets_key_env
from anvil.domain.runners import validate_spec
from anvil.errors import InvalidInput
from anvil.settings import Settings, get_settings
from db.secrets import (
    Reference,
    SecretsNotConfigured,
    SecretUnavailable,
    box_for,
    decrypt,
    encrypt,
    references,
    with_values,
)
from workers.runners.base import RunContext
from workers.runners.tooling import tool_env

KEY = "k" * 40
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspaces" / "bdd-demo"


def refusal(kind: str, spec: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_spec(kind, spec)
    return info.value


# ---- specs ----------------------------------------------------------------------------------------


def test_a_step_env_may_name_a_secret_beside_plain_values() -> None:
    env = {"MODE": "fast", "TOKEN": {"secret": "deploy-token"}}
    stored = validate_spec("generic", {"workspace": "demo", "steps": [{"run": ["true"], "env": env}]})
    assert stored["steps"][0]["env"] == env


def test_a_pytest_run_has_an_env_of_its_own() -> None:
    spec = {"workspace": "demo", "args": ["-q"], "env": {"TOKEN": {"secret": "a.b_c-1"}}}
    assert validate_spec("pytest", spec) == spec
    # Left out, it stays out of the stored spec.
    assert validate_spec("pytest", {"workspace": "demo"}) == {"workspace": "demo", "args": []}


def test_a_bdd_spec_has_an_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "bdd")
    monkeypatch.setenv("ANVIL_WORKSPACE_ROOT", str(tmp_path))
    get_settings.cache_clear()
    try:
        spec = {"workspace": "bdd", "feature": "features/login.feature", "env": {"T": {"secret": "t"}}}
        assert validate_spec("bdd", spec) == spec
        assert refusal("bdd", {**spec, "env": {"ANVIL_X": "1"}}).field == "body.spec.env"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("env", "field", "words"),
    [
        ({"T": {"secret": "has space"}}, "body.spec.steps.0.env.T", "1-64 characters"),
        ({"T": {"secret": "x" * 65}}, "body.spec.steps.0.env.T", "1-64 characters"),
        ({"T": {"secret": ""}}, "body.spec.steps.0.env.T", "1-64 characters"),
        ({"T": {"secret": ".."}}, "body.spec.steps.0.env.T", "starting with a letter or digit"),
        ({"T": {"secret": "-x"}}, "body.spec.steps.0.env.T", "starting with a letter or digit"),
        ({"T": {"secret": "ok", "value": "leak"}}, "body.spec.steps.0.env.T", "nothing else"),
        ({"T": {"name": "ok"}}, "body.spec.steps.0.env.T", '{"secret": "<name>"}'),
        ({"T": {"secret": 5}}, "body.spec.steps.0.env.T", '{"secret": "<name>"}'),
        ({"T": 5}, "body.spec.steps.0.env.T", "a string, or"),
        ({"T": None}, "body.spec.steps.0.env.T", "a string, or"),
        ({"T": "x" * 4097}, "body.spec.steps.0.env.T", "4096"),
        ({"T": "a\x00b"}, "body.spec.steps.0.env.T", "NUL"),
        ({"ANVIL_T": {"secret": "ok"}}, "body.spec.steps.0.env", "reserved"),
    ],
)
def test_bad_env_values_are_refused_naming_the_variable(env: dict[str, Any], field: str, words: str) -> None:
    err = refusal("generic", {"workspace": "demo", "steps": [{"run": ["true"], "env": env}]})
    assert err.field == field
    assert words in err.detail


def test_references_are_found_in_every_env_map_and_replaced_by_values() -> None:
    spec = {
        "workspace": "w",
        "env": {"A": {"secret": "one"}, "PLAIN": "x", "B": {"secret": "two"}},
        "steps": [{"run": ["true"]}, {"run": ["true"], "env": {"C": {"secret": "one"}}}],
    }
    assert references(spec) == [
        Reference("env.A", "one"),
        Reference("env.B", "two"),
        Reference("steps.1.env.C", "one"),
    ]
    resolved = with_values(spec, {"one": "1!", "two": "2!"})
    assert resolved["env"] == {"A": "1!", "PLAIN": "x", "B": "2!"}
    assert resolved["steps"][1]["env"] == {"C": "1!"}
    assert spec["env"]["A"] == {"secret": "one"}, "the snapshot itself keeps the reference"
    assert references({"steps": [{"action": "look"}]}) == [], "manual specs name none"


# ---- encryption -----------------------------------------------------------------------------------


def test_values_are_encrypted_bound_to_their_name_and_key() -> None:
    box = box_for(Settings(secrets_key=KEY))
    token = encrypt(box, name="deploy-token", value="hunter2-very-secret")
    assert "hunter2" not in token
    assert encrypt(box, name="deploy-token", value="hunter2-very-secret") != token, "random IV each time"
    assert decrypt(box, name="deploy-token", token=token) == "hunter2-very-secret"
    with pytest.raises(SecretUnavailable, match="another secret"):
        decrypt(box, name="other-name", token=token)
    other = box_for(Settings(secrets_key="z" * 40))
    with pytest.raises(SecretUnavailable, match="cannot be decrypted"):
        decrypt(other, name="deploy-token", token=token)


def test_the_key_is_derived_from_its_own_setting_not_the_signing_key() -> None:
    with pytest.raises(SecretsNotConfigured, match="ANVIL_SECRETS_KEY"):
        box_for(Settings(secret_key="s" * 40, secrets_key=None))
    token = encrypt(box_for(Settings(secret_key="s" * 40, secrets_key=KEY)), name="n", value="v")
    assert decrypt(box_for(Settings(secret_key="t" * 40, secrets_key=KEY)), name="n", token=token) == "v"


# ---- the setting ----------------------------------------------------------------------------------


def test_the_key_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As every secret setting can (anvil.settings.SECRET_SETTINGS)."""
    monkeypatch.delenv("ANVIL_SECRETS_KEY", raising=False)
    (tmp_path / "key").write_text(KEY + "\n")
    monkeypatch.setenv("ANVIL_SECRETS_KEY_FILE", str(tmp_path / "key"))
    settings = Settings()
    assert settings.secrets_key is not None and settings.secrets_key.get_secret_value() == KEY
    assert KEY not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANVIL_SECRETS_KEY": "short"}, "at least 32 characters"),
        ({"ANVIL_SECRETS_KEY": KEY, "ANVIL_SECRETS_KEY_FILE": "/dev/null"}, "only one"),
        ({"ANVIL_SECRETS_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
    ],
)
def test_bad_key_settings_are_refused(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANVIL_SECRETS_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):  # a ValidationError, or the secret files' error
        Settings()


def test_an_empty_key_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANVIL_SECRETS_KEY", "")
    assert Settings().secrets_key is None


# ---- anvil dev ------------------------------------------------------------------------------------


def test_anvil_dev_keeps_one_generated_key_per_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANVIL_SECRETS_KEY", raising=False)
    monkeypatch.delenv("ANVIL_SECRETS_KEY_FILE", raising=False)
    first = secrets_key_env(tmp_path)
    path = Path(first["ANVIL_SECRETS_KEY_FILE"])
    assert path.parent == tmp_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_text().strip()
    assert len(key) >= 32
    assert secrets_key_env(tmp_path) == first and path.read_text().strip() == key, "kept across restarts"
    (tmp_path / "other").mkdir()
    secrets_key_env(tmp_path / "other")
    assert (tmp_path / "other" / "secrets_key").read_text().strip() != key, "one key per data directory"
    monkeypatch.setenv("ANVIL_SECRETS_KEY", KEY)
    assert secrets_key_env(tmp_path) == {}, "a key given by the user wins"


# ---- the runners' environment ---------------------------------------------------------------------


def _context(spec: dict[str, Any]) -> RunContext:
    return RunContext(
        execution_id=uuid.uuid4(),
        attempt=1,
        snapshot={"name": "c", "kind": "bdd", "spec": spec, "timeout_s": 10},
        params={},
        workspace_root=Path("/nonexistent"),
        output_cap=1024,
        stop=threading.Event(),
        emit=lambda step: True,
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"workspace": "w", "feature": "f.feature", "env": {"TOKEN": "v", "PYTHONPATH": "src"}},
        {"workspace": "w", "args": [], "env": {"TOKEN": "v", "PYTHONPATH": "src"}},
    ],
)
def test_pytest_and_bdd_runs_get_their_spec_env(spec: dict[str, Any], tmp_path: Path) -> None:
    env = tool_env(_context(spec), tmp_path)
    assert env["TOKEN"] == "v"
    # The plugin's import path comes first; the spec's PYTHONPATH after it.
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "path"), "src"]
    assert env["ANVIL_ATTEMPT"] == "1"
