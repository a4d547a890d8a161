"""What `anvil dev` prepares before it starts anything: the broker (ANVIL_REDIS_URL, else a
private `redis-server`, else kombu's filesystem transport), the keys (generated once per data
directory), the workspace root, the admin user and its token, and whether tests can be sandboxed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from anvil.cli.supervisor import Supervisor, say
from anvil.migrate import ROOT

if TYPE_CHECKING:
    from anvil.settings import Settings

Broker = Literal["auto", "redis-server", "filesystem"]


class StartupError(Exception):
    """The standalone stack cannot start; the message says why and what to change."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As uvicorn does: a port whose old connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_broker(choice: Broker, data_dir: Path) -> tuple[str, bool]:
    """The broker URL and whether a private redis-server must be started for it."""
    if choice == "filesystem":
        return f"filesystem://{data_dir / 'broker'}", False
    if choice == "auto" and os.environ.get("ANVIL_REDIS_URL"):
        return os.environ["ANVIL_REDIS_URL"], False
    if shutil.which("redis-server"):
        return "", True
    if choice == "redis-server":
        raise StartupError("--broker redis-server: no redis-server on PATH")
    return f"filesystem://{data_dir / 'broker'}", False


def start_redis(sup: Supervisor, data_dir: Path) -> str:
    """A private, non-persistent redis-server on a free loopback port; returns its URL."""
    import redis

    port = free_port()
    argv = [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
    ]
    sup.redis = sup.start("redis", argv, dict(os.environ))
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not sup.redis.alive():
            raise StartupError(f"redis-server exited with {sup.redis.proc.returncode}")
        try:
            client.ping()
            client.close()
            return f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            time.sleep(0.1)
    raise StartupError("redis-server did not answer within 10 s")


def workspace_root(given: Path | None) -> Path:
    """ANVIL_WORKSPACE_ROOT or --workspace-root, else ./examples/workspaces, else ./workspaces (created)."""
    if given is not None:
        return given.resolve()
    if os.environ.get("ANVIL_WORKSPACE_ROOT"):
        return Path(os.environ["ANVIL_WORKSPACE_ROOT"]).resolve()
    examples = Path("examples/workspaces")
    if examples.is_dir():
        return examples.resolve()
    root = Path("workspaces").resolve()
    if not root.exists():
        root.mkdir(parents=True)
        # A fresh root gets the example workspaces so the example cases can run from any directory.
        shipped = ROOT / "examples" / "workspaces"
        for example in sorted(shipped.iterdir()) if shipped.is_dir() else []:
            if example.is_dir():
                shutil.copytree(example, root / example.name)
    return root


def generated_key(path: Path) -> Path:
    """``path``, holding a random key made the first time (mode 0600): one key per data directory,
    the same across restarts, never the development key from the public source."""
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))
    os.chmod(path, 0o600)
    return path


def secret_key_env(data_dir: Path) -> dict[str, str]:
    """The signing key for every process: ANVIL_SECRET_KEY or ANVIL_SECRET_KEY_FILE as given, else
    the data directory's generated key, handed over as a file (tokens survive restarts)."""
    if os.environ.get("ANVIL_SECRET_KEY") or os.environ.get("ANVIL_SECRET_KEY_FILE"):
        return {}
    return {"ANVIL_SECRET_KEY_FILE": str(generated_key(data_dir / "secret_key"))}


def secrets_key_env(data_dir: Path) -> dict[str, str]:
    """The key of test secrets (a key of its own): ANVIL_SECRETS_KEY or ANVIL_SECRETS_KEY_FILE as
    given, else the data directory's generated key as a file (stored secrets survive restarts)."""
    if os.environ.get("ANVIL_SECRETS_KEY") or os.environ.get("ANVIL_SECRETS_KEY_FILE"):
        return {}
    return {"ANVIL_SECRETS_KEY_FILE": str(generated_key(data_dir / "secrets_key"))}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def ensure_admin(data_dir: Path) -> tuple[str, str | None]:
    """An access token for the ``admin`` user, and its password when it was just created."""
    from anvil.domain.enums import Role
    from anvil.settings import get_settings
    from api.security import issue_token
    from db.session import new_session
    from db.users import create_user, get_user_by_name

    password = None
    with new_session() as session, session.begin():
        user = get_user_by_name(session, "admin")
        if user is None:
            password = secrets.token_urlsafe(12)
            user = create_user(session, username="admin", password=password, role=Role.ADMIN)
        token = issue_token(
            get_settings(),
            user_id=user.id,
            username=user.username,
            role=user.role,
            generation=user.token_generation,
        )
    _write_private(data_dir / "token", token)
    return token, password


def sandbox_env(settings: Settings) -> dict[str, str]:
    """The worker sandboxes tests when it can; on a laptop without bubblewrap (or user namespaces)
    ``anvil dev`` still runs, unconfined, and says so (``anvil worker`` alone would refuse)."""
    from workers.confinement import sandbox_problem

    if settings.sandbox == "off":
        return {}
    problem = sandbox_problem(settings)
    if problem is None:
        say("anvil", "tests run sandboxed (bubblewrap)")
        return {}
    say("anvil", f"WARNING: tests run UNSANDBOXED, as your user: {problem}")
    return {"ANVIL_SANDBOX": "off"}
