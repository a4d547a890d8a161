"""Secrets from files, the development key's rule, and what a server process does with its secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from anvil.cli.bootstrap import generated_key, secret_key_env
from anvil.hardening import dev_secret_refusal, forget_secret_environment
from anvil.settings import DEV_SECRET, REMOVED_MARKER, SECRET_SETTINGS, Settings, SettingsFileError

KEY = "k" * 40
VALUES = {
    "secret_key": KEY,
    "database_url": "postgresql+psycopg://anvil:pw@db.internal:5432/anvil",
    "redis_url": "redis://:pw@broker.internal:6379/0",
    "secrets_key": "s" * 40,
    "metrics_token": "m" * 40,
}


def value_of(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No secret setting in the environment, in either form; all restored afterwards (set first, so
    that monkeypatch also undoes what the code under test sets or deletes itself)."""
    for name in SECRET_SETTINGS:
        for variable in (f"ANVIL_{name.upper()}", f"ANVIL_{name.upper()}_FILE"):
            monkeypatch.setenv(variable, "")
            monkeypatch.delenv(variable)
    monkeypatch.setenv(REMOVED_MARKER, "")
    monkeypatch.delenv(REMOVED_MARKER)
    return monkeypatch


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_secret_setting_comes_from_the_environment_or_from_its_file(
    name: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variable = f"ANVIL_{name.upper()}"
    clean_env.setenv(variable, VALUES[name])
    assert value_of(Settings(), name) == VALUES[name]

    clean_env.delenv(variable)
    file = tmp_path / name
    file.write_text(VALUES[name] + "\n")  # as `echo value > file` writes it
    clean_env.setenv(f"{variable}_FILE", str(file))
    assert value_of(Settings(), name) == VALUES[name]


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_a_variable_and_its_file_together_are_refused(
    name: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variable = f"ANVIL_{name.upper()}"
    (tmp_path / "value").write_text(VALUES[name])
    clean_env.setenv(variable, VALUES[name])
    clean_env.setenv(f"{variable}_FILE", str(tmp_path / "value"))
    with pytest.raises(SettingsFileError, match=f"both {variable} and {variable}_FILE are set"):
        Settings()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read: No such file or directory"),
        ("a directory", "is a directory"),
        (b"\n", "is empty"),
        (b"\xff\xfe\x00", "is not UTF-8 text"),
    ],
    ids=["missing", "directory", "empty", "binary"],
)
def test_an_unusable_secret_file_is_a_clear_error_naming_it(
    content: bytes | str | None, says: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "secret_key"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.mkdir()
    clean_env.setenv("ANVIL_SECRET_KEY_FILE", str(path))
    with pytest.raises(SettingsFileError) as info:
        Settings()
    assert f"ANVIL_SECRET_KEY_FILE={path}" in str(info.value) and says in str(info.value)


def test_an_unreadable_secret_file_is_a_clear_error(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    file = tmp_path / "key"
    file.write_text(KEY)
    file.chmod(0)
    clean_env.setenv("ANVIL_SECRET_KEY_FILE", str(file))
    with pytest.raises(SettingsFileError, match="cannot be read: Permission denied"):
        Settings()


def test_forgetting_the_environment_removes_only_the_secret_values(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("ANVIL_SECRET_KEY", KEY)
    clean_env.setenv("ANVIL_DATABASE_URL", VALUES["database_url"])
    clean_env.setenv("ANVIL_REDIS_URL_FILE", str(tmp_path / "redis_url"))
    clean_env.setenv("ANVIL_LOG_LEVEL", "INFO")

    assert forget_secret_environment() == ["secret_key", "database_url"]

    assert "ANVIL_SECRET_KEY" not in os.environ and "ANVIL_DATABASE_URL" not in os.environ
    # Paths and ordinary settings stay (the sandbox reads the *_FILE paths to hide those files).
    assert os.environ["ANVIL_REDIS_URL_FILE"] == str(tmp_path / "redis_url")
    assert os.environ["ANVIL_LOG_LEVEL"] == "INFO"
    assert os.environ[REMOVED_MARKER] == "secret_key,database_url"


def test_a_process_started_from_a_scrubbed_environment_does_not_fall_back_to_the_defaults(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What a Celery worker re-executing itself on SIGHUP would inherit.
    clean_env.setenv(REMOVED_MARKER, "secret_key,database_url")
    with pytest.raises(SettingsFileError, match="ANVIL_SECRET_KEY was removed from the environment"):
        Settings()
    # Given as files, the secrets survive a re-execution.
    for name in ("secret_key", "database_url"):
        (tmp_path / name).write_text(VALUES[name])
        clean_env.setenv(f"ANVIL_{name.upper()}_FILE", str(tmp_path / name))
    assert Settings().secret_key == KEY


LOCAL_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/anvil"
LOCAL_BROKER = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("listen", "database", "broker", "refused_because"),
    [
        # Everything on this machine: the development key is accepted.
        ("127.0.0.1", LOCAL_DB, LOCAL_BROKER, None),
        ("localhost", "postgresql+psycopg://postgres@localhost/anvil", "redis://localhost", None),
        ("::1", "postgresql+psycopg://postgres@[::1]:5432/anvil", "redis://[::1]:6379/0", None),
        ("127.0.0.2", "sqlite:////tmp/anvil.db", "filesystem:///tmp/broker", None),
        (None, "postgresql+psycopg://postgres@/anvil?host=/run/postgresql", "redis+socket:///r.sock", None),
        (None, "postgresql+psycopg://postgres@/anvil", "memory://", None),
        # Reachable from elsewhere: refused, saying why.
        ("0.0.0.0", LOCAL_DB, LOCAL_BROKER, "the API would listen on 0.0.0.0"),
        ("::", LOCAL_DB, LOCAL_BROKER, "the API would listen on ::"),
        ("10.1.2.3", LOCAL_DB, LOCAL_BROKER, "the API would listen on 10.1.2.3"),
        ("myhost", LOCAL_DB, LOCAL_BROKER, "the API would listen on myhost"),
        (None, "postgresql+psycopg://u:p@postgres:5432/anvil", LOCAL_BROKER, "the database is on postgres"),
        (None, "postgresql+psycopg://u@/anvil?host=db1,db2", LOCAL_BROKER, "the database is on db1, db2"),
        (None, "postgresql://u@127.0.0.1:5432,10.0.0.9:5432/a", LOCAL_BROKER, "the database is on 10.0.0.9"),
        (None, LOCAL_DB, "redis://:pw@redis:6379/0", "the broker is on redis"),
        (None, LOCAL_DB, "sentinel://127.0.0.1:26379;sentinel://10.0.0.5:26379", "the broker is on 10.0.0.5"),
    ],
)
def test_the_development_key_is_accepted_only_when_everything_stays_on_this_machine(
    listen: str | None, database: str, broker: str, refused_because: str | None
) -> None:
    settings = Settings(secret_key=DEV_SECRET, database_url=database, redis_url=broker)
    refusal = dev_secret_refusal(settings, role="api", listen_host=listen)
    if refused_because is None:
        assert refusal is None
    else:
        assert refusal is not None and refused_because in refusal
        assert "ANVIL_SECRET_KEY" in refusal and "openssl rand -hex 32" in refusal
    # With a real key nothing is refused.
    real = Settings(secret_key=KEY, database_url=database, redis_url=broker)
    assert dev_secret_refusal(real, role="api", listen_host=listen) is None


def test_non_dumpable_survives_fork_and_not_exec() -> None:
    # In a child interpreter: being non-dumpable is for the whole process, not for pytest.
    script = """
import os, subprocess, sys
from anvil.hardening import is_dumpable, make_undumpable
before = is_dumpable()
make_undumpable()
pid = os.fork()
if pid == 0:
    os._exit(0 if not is_dumpable() else 1)
_, status = os.waitpid(pid, 0)
exec_child = subprocess.run([sys.executable, "-c",
    "from anvil.hardening import is_dumpable; print(is_dumpable())"], capture_output=True, text=True)
print(before, is_dumpable(), os.waitstatus_to_exitcode(status) == 0, exec_child.stdout.strip())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # dumpable before; not after; a forked child (a Celery pool process) is not either; a program
    # it executes (a test command) is an ordinary, dumpable process again.
    assert done.stdout.split() == ["True", "False", "True", "True"]


def test_anvil_dev_generates_one_private_key_per_data_directory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    first = secret_key_env(tmp_path / "a")["ANVIL_SECRET_KEY_FILE"]
    key = Path(first).read_text().strip()
    assert len(key) >= 32 and key != DEV_SECRET
    assert Path(first).stat().st_mode & 0o777 == 0o600
    # The same key after a restart; another data directory gets another key.
    assert Path(secret_key_env(tmp_path / "a")["ANVIL_SECRET_KEY_FILE"]).read_text().strip() == key
    (tmp_path / "b").mkdir()
    assert generated_key(tmp_path / "b" / "secret_key").read_text().strip() != key
    # A key the user gives is used as given.
    clean_env.setenv("ANVIL_SECRET_KEY", KEY)
    assert secret_key_env(tmp_path / "a") == {}
