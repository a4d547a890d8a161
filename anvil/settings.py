"""The one settings object every process (API, worker, beat, Alembic, CLI) reads.

Values come from the environment with the ``ANVIL_`` prefix, e.g. ``ANVIL_DATABASE_URL``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "anvil-dev-secret-change-me-please-32b"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANVIL_", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/anvil"
    # Broker URL. Redis in production; standalone mode may use kombu's filesystem:// transport.
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = Field(default=DEV_SECRET, min_length=32)
    token_ttl_s: int = Field(default=12 * 3600, gt=0)

    workspace_root: Path = Path("./workspaces")
    # Output kept per step; the rest is dropped and the truncation marked.
    step_output_cap: int = Field(default=64 * 1024, ge=1024)
    max_test_timeout_s: int = Field(default=3600, gt=0)
    default_test_timeout_s: int = Field(default=900, gt=0)

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
    # reads of event streams). `anvil api --workers N` has N times this.
    api_threads: int = Field(default=40, ge=1, le=1024)
    # Database connections kept per process (each API worker process, each Celery pool process).
    # Default: ANVIL_API_THREADS, one per thread. The API lets this many requests use the database
    # at once; the others wait for their turn on the event loop, holding neither a thread nor a
    # connection, and get a 503 problem after db_pool_timeout_s: only under true overload.
    db_pool_size: int | None = Field(default=None, ge=1)
    # Connections opened above the pool for work outside those turns (health checks), closed on return.
    db_max_overflow: int = Field(default=5, ge=0)
    # Longest wait for a connection (in the API: for a turn at the database) before giving up.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    page_limit_max: int = 200

    worker_concurrency: int = Field(default=2, gt=0)
    log_level: str = "INFO"
    # Directory for standalone state (SQLite database, filesystem broker, pid files).
    data_dir: Path = Path("./.anvil")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not (v.startswith("postgresql") or v.startswith("sqlite")):
            raise ValueError("ANVIL_DATABASE_URL must be a postgresql+psycopg:// or sqlite:// URL")
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
        return self.max_test_timeout_s + 600


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
