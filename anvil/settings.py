"""The one settings object every process (API, worker, beat, Alembic, CLI) reads.

Values come from the environment with the ``ANVIL_`` prefix, e.g. ``ANVIL_DATABASE_URL``. The
secrets among them (``SECRET_SETTINGS``) can instead be read from a file named by ``ANVIL_<NAME>_FILE``
(Docker and Kubernetes secrets), e.g. ``ANVIL_SECRET_KEY_FILE=/run/secrets/anvil_secret_key``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The fallback signing key. It is in the public source, so `anvil api|worker|beat` accept it only
# when everything stays on this machine (anvil/hardening.py); `anvil dev` generates a key instead.
DEV_SECRET = "anvil-dev-secret-change-me-please-32b"

# Settings that are secrets: each may come from ANVIL_<NAME> or from the file ANVIL_<NAME>_FILE
# names (not both), and `anvil api|worker|beat` remove ANVIL_<NAME> from their environment once
# the settings are loaded. A new secret setting is added here, and nothing else.
SECRET_SETTINGS: tuple[str, ...] = ("secret_key", "database_url", "redis_url", "secrets_key", "metrics_token")
# Set by a process that removed its secrets from its environment, naming them, so that a process
# started from that environment (a Celery worker re-executing itself on SIGHUP) fails clearly
# instead of silently running on the defaults.
REMOVED_MARKER = "ANVIL_SECRETS_REMOVED_FROM_ENV"


class SettingsFileError(ValueError):
    """A secret setting's file is unusable, or the setting is given twice; the message says which."""


def _read_secret_file(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise SettingsFileError(f"{variable}_FILE={path} is a directory, not a file") from None
    except OSError as exc:
        raise SettingsFileError(f"{variable}_FILE={path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsFileError(f"{variable}_FILE={path} is not UTF-8 text") from None
    value = text.rstrip("\r\n")  # `echo value > file` adds a newline; the value is the line
    if not value:
        raise SettingsFileError(f"{variable}_FILE={path} is empty")
    return value


class SecretFilesSource(PydanticBaseSettingsSource):
    """``ANVIL_<NAME>_FILE`` for each of SECRET_SETTINGS: the setting's value is that file's content."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        removed = [n for n in os.environ.get(REMOVED_MARKER, "").split(",") if n]
        for name in SECRET_SETTINGS:
            variable = f"ANVIL_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if path and os.environ.get(variable) is not None:
                raise SettingsFileError(f"both {variable} and {variable}_FILE are set; set only one of them")
            if path:
                values[name] = _read_secret_file(variable, path)
            elif name in removed and os.environ.get(variable) is None:
                raise SettingsFileError(
                    f"{variable} was removed from the environment this process inherited (Anvil's "
                    f"processes remove their secrets from their environment at start-up; a Celery "
                    f"worker restarted with SIGHUP runs again from it): give it as a file with "
                    f"{variable}_FILE, or restart the process from its service manager"
                )
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANVIL_", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/anvil"
    # Broker URL. Redis in production; standalone mode may use kombu's filesystem:// transport.
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = Field(default=DEV_SECRET, min_length=32)
    token_ttl_s: int = Field(default=12 * 3600, gt=0)
    # Login throttling (db/throttle.py): after this many failed logins in a row for one username,
    # or from one client address, further logins are refused (429) for login_lockout_s, doubling
    # with each further failure up to login_lockout_max_s. Failures older than the window are forgotten.
    login_user_failures: int = Field(default=5, ge=1)
    login_address_failures: int = Field(default=20, ge=1)
    login_lockout_s: float = Field(default=2.0, gt=0)
    login_lockout_max_s: float = Field(default=900.0, gt=0)
    login_failure_window_s: float = Field(default=900.0, gt=0)
    # The key test secrets are encrypted with (db/secrets.py), apart from secret_key (32+ characters).
    # Unset: test secrets cannot be stored, nor given to the tests that name them.
    secrets_key: SecretStr | None = None
    # Set: Prometheus scrapes (the API's /metrics, `--metrics-port` of workers and beat) must send
    # "Authorization: Bearer <this>". Unset: the metrics are open, like /healthz.
    metrics_token: SecretStr | None = None
    # Where people open Anvil (e.g. https://anvil.example.com): links in webhook messages to the
    # run or test page. Unset: messages carry no link.
    public_url: str | None = None
    # Webhooks (db/webhooks.py, scheduler/deliveries.py): each POST may take this long; a delivery
    # that keeps failing is tried again with growing waits for webhook_retry_hours, then marked failed.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    # The wait before a failed delivery's 2nd attempt; later waits grow from it (5 s: 30 s, 2 min,
    # 10 min, 30 min, 1 h, then every 3 h).
    webhook_backoff_s: float = Field(default=5.0, gt=0)
    # How often the beat's sender looks for due deliveries, and how many it sends at once.
    webhook_poll_s: float = Field(default=1.0, gt=0)
    webhook_senders: int = Field(default=4, ge=1, le=64)

    workspace_root: Path = Path("./workspaces")
    # Output kept per step; the rest is dropped and the truncation marked.
    step_output_cap: int = Field(default=64 * 1024, ge=1024)
    max_test_timeout_s: int = Field(default=3600, gt=0)
    broker_visibility_timeout_s: int | None = Field(
        default=None,
        gt=0,
        description=(
            "ANVIL_BROKER_VISIBILITY_TIMEOUT_S: seconds after which Redis hands a message its worker has "
            "not acknowledged (a running execution's) to a worker again. Default: max_test_timeout_s + "
            "600, above the longest allowed run. A lower value is safe (the database claim turns a "
            "redelivered message into a no-op) but costs a wasted delivery per running execution and "
            "timeout; the fault tests set 5 to exercise redelivery."
        ),
    )
    default_test_timeout_s: int = Field(default=900, gt=0)

    # The sandbox every test process runs in (workers/confinement.py): "bwrap" (bubblewrap; the
    # worker refuses to start without it) or "off" (tests run as the worker's user and can read its
    # secrets: only for trusted tests on a laptop).
    sandbox: Literal["bwrap", "off"] = "bwrap"
    # The user tests run as when the worker runs as root (Docker, CI); it must exist.
    sandbox_user: str = "anvil-sandbox"
    # "auto": where the worker owns a delegated cgroup v2 subtree, each test process gets a cgroup
    # (memory.max, pids.max) instead of the address-space and process rlimits; "off": rlimits only.
    sandbox_cgroup: Literal["auto", "off"] = "auto"
    # The uid/gid a test has in its user namespace when the worker runs as an ordinary user.
    sandbox_userns_id: int = Field(default=10002, ge=1, le=2**31 - 2)
    # Per-test resource limits (a case may ask for other values in its spec's "limits", up to the
    # *_max values). Memory is the address space (RLIMIT_AS); processes count the sandbox uid's.
    sandbox_memory_mb: int = Field(default=4096, ge=16)
    sandbox_memory_mb_max: int = Field(default=32768, ge=16)
    sandbox_processes: int = Field(default=512, ge=1)
    sandbox_processes_max: int = Field(default=8192, ge=1)
    sandbox_cpu_s: int = Field(default=3600, ge=1)
    sandbox_cpu_s_max: int = Field(default=86400, ge=1)
    sandbox_file_size_mb: int = Field(default=4096, ge=1)
    sandbox_file_size_mb_max: int = Field(default=65536, ge=1)

    # Lease a running execution holds; the worker renews it every heartbeat_s.
    lease_ttl_s: float = Field(default=15.0, gt=0)
    heartbeat_s: float = Field(default=3.0, gt=0)
    # A QUEUED execution no worker claimed for this long is published again.
    republish_after_s: float = Field(default=10.0, gt=0)
    tick_interval_s: float = Field(default=1.0, gt=0)
    # A RUNNING execution past its deadline plus this, whose worker stopped heartbeating: TIMEOUT.
    timeout_grace_s: float = Field(default=30.0, ge=0)
    # A PAUSED manual execution nobody finished within this: TIMEOUT.
    manual_timeout_s: float = Field(default=24 * 3600, gt=0)
    # How often a running execution's worker looks for a cancel request.
    cancel_poll_s: float = Field(default=0.5, gt=0)
    # Attempts (claims) allowed per execution, counting re-dispatches after lost workers.
    max_attempts: int = Field(default=3, ge=1, le=20)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Threads of one API process for blocking work (sync endpoints and dependencies, the database
    # reads of event streams). `anvil api --workers N` has N times this. Default: 8 per CPU, at most
    # 40 (anyio's default): they mostly wait on PostgreSQL, and more of them only contend for the GIL.
    api_threads: int = Field(default_factory=lambda: min(40, 8 * (os.cpu_count() or 1)), ge=1, le=1024)
    # Database connections kept per process (each API worker process, each Celery pool process).
    # Default: ANVIL_API_THREADS, one per thread. The API lets this many requests use the database
    # at once; the others wait for their turn on the event loop, holding neither a thread nor a
    # connection, and get a 503 problem after db_pool_timeout_s: only under true overload.
    db_pool_size: int | None = Field(default=None, ge=1)
    # Connections opened above the pool for work outside those turns (health checks), closed on return.
    db_max_overflow: int = Field(default=5, ge=0)
    # Longest wait for a connection (in the API: for a turn at the database) before giving up.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    # Longest wait of the API for PostgreSQL to answer one command. A stopped or frozen server (SIGSTOP,
    # a paused VM) accepts bytes and answers nothing: the request gets a 503 instead of hanging until
    # it resumes. A command of the API that legitimately runs longer gets the 503 too.
    db_answer_timeout_s: float = Field(default=5.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # A JUnit report imported with POST /api/v1/results/junit may be this large (the request's body
    # limit there, in place of max_body_bytes); parsing it takes about 10x this in memory.
    import_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Test history (anvil/domain/flaky.py): a test is flaky in a window when it passed and failed on
    # one revision, passed on a retry after failing, or its flip rate (pass<->fail changes / (runs - 1)
    # on one branch) is at least flaky_flip_rate with flaky_min_flips flips in flaky_min_runs runs.
    flaky_window_days: int = Field(default=30, ge=1, le=3650)
    flaky_flip_rate: float = Field(default=0.2, gt=0, le=1)
    flaky_min_flips: int = Field(default=2, ge=1)
    flaky_min_runs: int = Field(default=5, ge=2)
    # Retention (scheduler duty): executions, their steps and events are deleted after
    # retention_days; per-test results (statistics, flaky detection) after results_retention_days.
    # Deleted in batches of retention_batch rows, one short transaction each.
    retention_days: int = Field(default=90, ge=1)
    results_retention_days: int = Field(default=365, ge=1)
    retention_batch: int = Field(default=500, ge=1, le=100_000)
    # A case with shards: "auto" never gives a shard fewer tests than this (starting a test process
    # costs about a second: a shard of a few tests is not worth it).
    shard_min_tests: int = Field(default=5, ge=1)
    page_limit_max: int = 200

    worker_concurrency: int = Field(default=2, gt=0)
    # How often a worker process renews its row in the worker registry (db/workers.py). One that
    # missed 3 in a row is stale and its slots stop counting; the API and workers read the same value.
    worker_heartbeat_s: float = Field(default=10.0, gt=0, le=3600)
    log_level: str = "INFO"
    # Where people open Flower (queues, workers, task rates); the web interface's operations page
    # links to it. Unset: no link (`anvil dev` sets it to the Flower it starts, http://127.0.0.1:5555).
    flower_url: str | None = None
    # Directory for standalone state (SQLite database, filesystem broker, pid files).
    data_dir: Path = Path("./.anvil")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A variable and its _FILE are never both used (SecretFilesSource refuses), so the order
        # only matters against values passed in code (init_settings first).
        files = SecretFilesSource(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not (v.startswith("postgresql") or v.startswith("sqlite")):
            raise ValueError("ANVIL_DATABASE_URL must be a postgresql+psycopg:// or sqlite:// URL")
        return v

    @field_validator("flower_url", mode="before")
    @classmethod
    def _flower_url(cls, v: object) -> object:
        if v == "":
            return None
        if isinstance(v, str) and not v.startswith(("http://", "https://")):
            raise ValueError(
                "ANVIL_FLOWER_URL must be an http:// or https:// URL, e.g. http://127.0.0.1:5555"
            )
        return v

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("secrets_key", mode="before")
    @classmethod
    def _secrets_key(cls, v: object) -> object:
        if v == "":
            return None
        if isinstance(v, str) and len(v) < 32:
            raise ValueError(
                "ANVIL_SECRETS_KEY must be at least 32 characters (e.g. the output of `openssl rand -hex 32`)"
            )
        return v

    @model_validator(mode="after")
    def _heartbeat_below_lease(self) -> Settings:
        if self.heartbeat_s * 2 > self.lease_ttl_s:
            raise ValueError("ANVIL_HEARTBEAT_S must be at most half of ANVIL_LEASE_TTL_S")
        return self

    @property
    def pool_size(self) -> int:
        return self.db_pool_size or self.api_threads

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def visibility_timeout_s(self) -> int:
        # Above the longest allowed run, so Redis never redelivers a message that is still running.
        return self.broker_visibility_timeout_s or self.max_test_timeout_s + 600


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
