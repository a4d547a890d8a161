"""How a process's metrics are gathered and served.

Multiprocess mode: ``anvil api``, ``anvil worker`` and ``anvil beat`` call ``prepare_directory``
before anything imports prometheus_client. Each gets a fresh directory of its own,
``$PROMETHEUS_MULTIPROC_DIR/<role>-<pid>`` (``anvil-metrics-<uid>`` in the system's temporary
directory when the variable is unset), which its children inherit: the uvicorn worker processes of
``anvil api --workers N`` and the prefork pool children of a worker write their values there, and a
scrape of the parent sums them. One directory per server process keeps the API's numbers out of a
worker's scrape on a shared host, and the directories of processes that are gone are removed at the
next start.

A process that did not prepare a directory (tests, an embedded app) keeps its metrics in its
default registry.
"""

from __future__ import annotations

import atexit
import hmac
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_directory(role: str) -> Path:
    """Make this server process's multiprocess directory and point PROMETHEUS_MULTIPROC_DIR at it.

    Must run before prometheus_client is imported: it picks its value store at import time.
    """
    default = Path(tempfile.gettempdir()) / f"anvil-metrics-{os.getuid()}"  # one per user: no clash
    base = Path(os.environ.get(MULTIPROC_ENV) or default)
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead(base)
    own = base / f"{role}-{os.getpid()}"
    shutil.rmtree(own, ignore_errors=True)  # a previous process of this pid: its values are not ours
    own.mkdir()
    os.environ[MULTIPROC_ENV] = str(own)
    atexit.register(_remove_own, own, os.getpid())
    return own


def _remove_own(own: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that happens to run exit handlers
        shutil.rmtree(own, ignore_errors=True)


def _remove_dead(base: Path) -> None:
    """Remove the directories that server processes no longer running left behind (killed ones)."""
    for entry in base.iterdir():
        _, _, pid = entry.name.rpartition("-")
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def registry(extra: Iterable[Any] = ()) -> Any:
    """A registry with this process's metrics (all its processes' in multiprocess mode) and the
    ``extra`` collectors."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    gathered = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(gathered)
    else:
        gathered.register(_Forward(REGISTRY))
    for collector in extra:
        gathered.register(collector)
    return gathered


class _Forward:
    """The default registry's metrics inside another registry (single-process mode)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()


def token_accepted(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries ``token`` (always, when no token is required)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        """Scrapes every few seconds would flood the log."""


def serve(port: int, *, host: str, token: str | None) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (a worker's or beat's --metrics-port),
    asking for ``Bearer <token>`` when ``token`` is set; returns a function that stops it."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"metrics are at /metrics\n"]
        if not token_accepted(environ.get("HTTP_AUTHORIZATION"), token):
            headers = [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            start_response("401 Unauthorized", headers)
            return [b"this needs Authorization: Bearer <ANVIL_METRICS_TOKEN>\n"]
        body = generate_latest(registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="anvil-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
