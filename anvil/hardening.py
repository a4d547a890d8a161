"""What `anvil api`, `anvil worker` and `anvil beat` do about their own secrets at start-up.

1. **No development key off this machine.** Without ANVIL_SECRET_KEY every process falls back to
   ``DEV_SECRET``, which is in the public source: anyone could sign an admin token with it. A
   process refuses to start with it unless the whole deployment stays on this machine — the API
   listens on a loopback address, and the database and the broker are on loopback, a Unix socket,
   SQLite or the filesystem transport. Every other case needs a real key; there is deliberately no
   switch to accept the public one.

2. **Secrets out of reach of the worker's other processes.** Once the settings are loaded the
   process no longer needs the secret variables, so it removes them from ``os.environ`` (nothing it
   starts inherits them), and it makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``). The
   second step is the one that protects: ``/proc/<pid>/environ`` shows the environment the process
   was *started* with, whatever ``os.environ`` says now, and ``/proc/<pid>/mem`` shows the settings
   in memory. For a non-dumpable process the kernel allows those files (and ptrace,
   ``process_vm_readv``) only to holders of CAP_SYS_PTRACE, not to other processes of the same uid.
   The attribute survives ``fork()`` — Celery's prefork pool processes and the API's threads keep
   it — and is reset by ``execve()``, so a test command started by the worker is an ordinary
   process again, with its own clean environment and, under bubblewrap, another uid.

   Re-executing the process with the secrets removed from its environment (handing them over in
   files or a pipe) was considered and not chosen: the process still holds the secrets in memory
   afterwards, readable through ``/proc/<pid>/mem`` by the same uid unless it is non-dumpable, and
   files readable by the worker's uid are readable by every process of that uid. Non-dumpable is the
   part that matters; the tests' own uid and PID namespace (workers/confinement.py) are the rest.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import sys
from urllib.parse import parse_qs, urlsplit

from anvil.settings import DEV_SECRET, REMOVED_MARKER, SECRET_SETTINGS, Settings

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
# Broker transports that never leave this machine.
LOCAL_TRANSPORTS = ("filesystem", "memory", "redis+socket", "unix", "socket")


def is_local_host(host: str | None) -> bool:
    """A loopback address, ``localhost``, or no host / a socket path (a Unix socket)."""
    if not host or host.startswith("/"):
        return True
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc_hosts(netloc: str) -> list[str]:
    """The hosts of a URL's authority, which may list several (``h1:5432,h2:5432``)."""
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        if part.startswith("["):
            hosts.append(part[1:].partition("]")[0])
        else:
            hosts.append(part.partition(":")[0])
    return hosts


def remote_hosts_of_database(url: str) -> list[str]:
    if url.startswith("sqlite"):
        return []
    parts = urlsplit(url)
    hosts = _netloc_hosts(parts.netloc)
    # libpq's ?host= (a socket directory or host names) overrides the authority's host.
    for given in parse_qs(parts.query).get("host", []):
        hosts += given.split(",")
    return [h for h in hosts if not is_local_host(h)]


def remote_hosts_of_broker(url: str) -> list[str]:
    hosts: list[str] = []
    for one in url.split(";"):  # kombu's failover list
        parts = urlsplit(one.strip())
        if parts.scheme in LOCAL_TRANSPORTS:
            continue
        hosts += [h for h in _netloc_hosts(parts.netloc) if not is_local_host(h)]
    return hosts


def dev_secret_refusal(settings: Settings, *, role: str, listen_host: str | None = None) -> str | None:
    """Why ``role`` must not start with the development key, or None (a real key, or all local)."""
    if settings.secret_key != DEV_SECRET:
        return None
    reasons = []
    if listen_host is not None and not is_local_host(listen_host):
        reasons.append(f"the API would listen on {listen_host}")
    database = remote_hosts_of_database(settings.database_url)
    if database:
        reasons.append(f"the database is on {', '.join(database)}")
    broker = remote_hosts_of_broker(settings.redis_url)
    if broker:
        reasons.append(f"the broker is on {', '.join(broker)}")
    if not reasons:
        return None
    return (
        f"anvil {role}: refusing to start with the development secret key while "
        f"{' and '.join(reasons)}. That key is in Anvil's public source, so anyone who can reach "
        f"the API could sign an admin token with it. Set ANVIL_SECRET_KEY (or ANVIL_SECRET_KEY_FILE, "
        f"a file holding it) to 32 or more random characters, the same for every process, e.g. "
        f"`openssl rand -hex 32`. The development key is accepted only when everything stays on "
        f"this machine: the API on a loopback address (127.0.0.1, ::1, localhost), the database and "
        f"the broker on loopback, a Unix socket, SQLite or filesystem://."
    )


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result = int(
        libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(value),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    )
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")
    return result


def make_undumpable() -> None:
    """No core dumps, and /proc/<pid>/{environ,mem,...} and ptrace for CAP_SYS_PTRACE only (Linux)."""
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_DUMPABLE, 0)


def is_dumpable() -> bool:
    return not sys.platform.startswith("linux") or _prctl(PR_GET_DUMPABLE) == 1


def secrets_in_environment() -> list[str]:
    """The secret settings' variables present in this process's environment."""
    return [f"ANVIL_{name.upper()}" for name in SECRET_SETTINGS if f"ANVIL_{name.upper()}" in os.environ]


def forget_secret_environment() -> list[str]:
    """Remove the secret settings' variables from this process's environment; returns their names.

    The ``ANVIL_*_FILE`` variables stay: they hold paths, not secrets, and the worker's sandbox
    reads them to hide those files from tests.
    """
    removed = [name for name in SECRET_SETTINGS if f"ANVIL_{name.upper()}" in os.environ]
    for name in removed:
        del os.environ[f"ANVIL_{name.upper()}"]
    if removed:
        earlier = [n for n in os.environ.get(REMOVED_MARKER, "").split(",") if n]
        os.environ[REMOVED_MARKER] = ",".join(dict.fromkeys([*earlier, *removed]))
    return removed


def protect_process() -> None:
    """After the settings are loaded: drop the secrets from the environment, become non-dumpable."""
    forget_secret_environment()
    make_undumpable()
