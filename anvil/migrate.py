"""Apply Alembic migrations programmatically (`anvil db upgrade`).

The migrations are the checkout's alembic/ directory; a wheel installs them as the package
``anvil_migrations`` beside ``anvil`` (pyproject.toml), as the top-level name ``alembic`` is the
library's. No alembic.ini is read: an installed Anvil has none, and everything it holds beyond the
script location is for the `alembic` command in a checkout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

# The checkout; for an installed wheel, site-packages.
ROOT = Path(__file__).resolve().parent.parent


def script_location() -> Path:
    """The migrations that came with this copy of Anvil: the installed anvil_migrations, else the
    checkout's alembic/ (an editable install or none)."""
    # Looked up beside the running code, not on sys.path: a checkout's code must not pick up the
    # migrations of a wheel installed in the same environment, nor the other way round. Not
    # importlib.resources: alembic/ has no __init__.py (one would shadow the library whenever the
    # checkout is on sys.path), and a namespace package has no single directory to hand over.
    installed = ROOT / "anvil_migrations"
    return installed if (installed / "env.py").is_file() else ROOT / "alembic"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str | None = None) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    from anvil.settings import get_settings

    engine = create_engine(database_url or get_settings().database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision of the migrations that came with this copy of Anvil."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
