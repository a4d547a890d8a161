"""`anvil dev`: the standalone supervisor (the embedded default).

It prepares a database (SQLite under ./.anvil unless ANVIL_DATABASE_URL says otherwise), a broker
(ANVIL_REDIS_URL, else a private `redis-server`, else kombu's filesystem transport), an admin and a
token, then runs the same processes as production — API, worker, beat, Flower — as children with
prefixed output, and stops them all on Ctrl-C / SIGTERM / SIGHUP or when one of them dies.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, cast

from rich.console import Console

from anvil.demo import SAMPLE_CASE, Registered, register_examples, run_demo
from anvil.migrate import ROOT
from anvil.processes import Child, anvil_argv

if TYPE_CHECKING:
    from anvil.settings import Settings

Broker = Literal["auto", "redis-server", "filesystem"]
STOP_GRACE_S = 10.0
# --exit-after-demo gives up (exit 1) when the sample case has not finished by then.
DEMO_TIMEOUT_S = 180.0
_print_lock = threading.Lock()



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

def say(role: str, text: str) -> None:
    """One line of output prefixed with the role it came from (``api    | …``)."""
    with _print_lock:
        for line in text.splitlines() or [""]:
            sys.stdout.write(f"{role:<6} | {line}\n")
        sys.stdout.flush()


class _Prefixed(io.TextIOBase):
    """A text stream (for rich) that prints complete lines through ``say``."""

    def __init__(self, role: str) -> None:
        self.role, self.pending = role, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            say(self.role, line)
        return len(text)


class StartupError(Exception):
    """The standalone stack cannot start; the message says why and what to change."""


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    redis: Child | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    worker_ready: threading.Event = field(default_factory=threading.Event)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        """Start ``argv`` in its own process group, its output read line by line in a thread."""
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc)
        threading.Thread(target=self._pump, args=(child,), name=f"log-{name}", daemon=True).start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if child.name == "worker" and " ready." in line:
                self.worker_ready.set()
            say(child.name, line)

    def dead(self) -> Child | None:
        """The first child that exited while nobody asked it to."""
        return next((c for c in [*self.children, *filter(None, [self.redis])] if not c.alive()), None)

    def shutdown(self) -> None:
        """SIGTERM everything (the broker last), wait, then SIGKILL whole groups that linger."""
        self.stopping.set()
        _terminate(self.children)
        if self.redis is not None:
            _terminate([self.redis])


def _terminate(children: list[Child]) -> None:
    for child in children:
        if child.alive():
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("anvil", f"{child.name} did not stop within {STOP_GRACE_S:g}s; killing it")
        # Also reaps what the child left in its group (e.g. a worker's pool processes).
        child.kill()


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


@dataclass
class Options:
    port: int
    flower_port: int
    flower: bool
    broker: Broker
    workspace_root: Path | None
    demo: bool
    exit_after_demo: bool


def run_dev(opts: Options) -> int:
    """Run the standalone stack until Ctrl-C (0), a child's death (1), or the demo's end."""
    sup = Supervisor()
    previous = {
        sig: signal.signal(sig, lambda *_: sup.stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        return _run(sup, opts)
    except StartupError as exc:
        say("anvil", f"error: {exc}")
        return 2
    finally:
        sup.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("anvil", "stopped")


def _run(sup: Supervisor, opts: Options) -> int:
    for port, what in ((opts.port, "--port"), (opts.flower_port, "--flower-port")):
        if (what == "--port" or opts.flower) and not port_free(port):
            raise StartupError(f"port {port} on 127.0.0.1 is already in use; choose another with {what}")
    data_dir = Path(os.environ.get("ANVIL_DATA_DIR", ".anvil")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "ANVIL_DATA_DIR": str(data_dir),
        "ANVIL_DATABASE_URL": os.environ.get("ANVIL_DATABASE_URL") or f"sqlite:///{data_dir / 'anvil.db'}",
        "ANVIL_WORKSPACE_ROOT": str(workspace_root(opts.workspace_root)),
        **secret_key_env(data_dir),
        **secrets_key_env(data_dir),
        "ANVIL_API_HOST": "127.0.0.1",
        "ANVIL_API_PORT": str(opts.port),
    }
    broker_url, needs_redis = choose_broker(opts.broker, data_dir)
    env["ANVIL_REDIS_URL"] = start_redis(sup, data_dir) if needs_redis else broker_url
    # Set for this process too: the migration and the admin bootstrap below read the same settings.
    os.environ.update(env)
    from anvil.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    say("anvil", f"database {settings.database_url}")
    say("anvil", f"broker   {settings.redis_url}" + (" (private redis-server)" if needs_redis else ""))
    say("anvil", f"workspaces {settings.workspace_root}")

    from anvil.migrate import upgrade

    upgrade(settings.database_url)
    token, password = ensure_admin(data_dir)

    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child_env.update(sandbox_env(settings))
    sup.children.append(sup.start("api", anvil_argv("api", "--port", str(opts.port)), child_env))
    sup.children.append(sup.start("worker", anvil_argv("worker"), child_env))
    sup.children.append(sup.start("beat", anvil_argv("beat"), child_env))
    if opts.flower:
        flower = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower"]
        flower += [f"--port={opts.flower_port}", "--address=127.0.0.1"]
        sup.children.append(sup.start("flower", flower, child_env))

    if settings.log_level.upper() not in ("DEBUG", "INFO"):
        sup.worker_ready.set()  # Celery only says "ready." at INFO; do not wait for what never comes
    api_url = f"http://127.0.0.1:{opts.port}"
    if not _wait_ready(sup, f"{api_url}/readyz"):
        return 0 if sup.stopping.is_set() else 1
    examples = register_examples(api_url, token)
    for problem in examples.problems:
        say("anvil", f"warning: {problem}")
    _banner(api_url, opts, token, password, data_dir, examples)

    outcome: list[bool] = []
    if opts.demo or opts.exit_after_demo:
        if examples.sample is None:
            say(
                "anvil", f"error: --demo needs the sample case examples/{SAMPLE_CASE}, which is not available"
            )
            return 1
        threading.Thread(
            target=_demo_thread,
            args=(sup, api_url, token, examples.sample[0], opts.exit_after_demo, outcome),
            daemon=True,
        ).start()
    return _watch(sup, opts, outcome)


def _wait_ready(sup: Supervisor, url: str, timeout_s: float = 90.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not sup.stopping.is_set():
        dead = sup.dead()
        if dead is not None:
            say("anvil", f"{dead.name} exited with {dead.proc.returncode} during start-up")
            return False
        try:
            # Up means tests can run: the API answers ready and the worker consumes.
            if sup.worker_ready.is_set() and httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    if not sup.stopping.is_set():
        say("anvil", f"{url} was not ready within {timeout_s:g}s")
    return False


def _banner(
    api_url: str,
    opts: Options,
    token: str,
    password: str | None,
    data_dir: Path,
    examples: Registered,
) -> None:
    lines = [
        f"Anvil is up: API {api_url}  (docs {api_url}/docs)",
        (
            f"Flower http://127.0.0.1:{opts.flower_port}  (listens on 127.0.0.1 only: it has no login)"
            if opts.flower
            else "Flower disabled"
        ),
    ]
    if password:
        lines.append(f"admin user created: username admin, password {password}  (shown only this once)")
    lines += [f"access token (admin), also in {data_dir / 'token'}:", f"  {token}"]
    if examples.cases or examples.suites:
        lines.append(
            f"examples ({examples.created} new): cases {', '.join(examples.cases) or '-'}; "
            f"suites {', '.join(examples.suites) or '-'}"
        )
    if examples.sample:
        ident, name = examples.sample
        lines.append(f"sample case {name!r} ({ident}); try:")
        lines.append(f"  ANVIL_API_URL={api_url} anvil submit case {name} --wait")
    if examples.suites:
        suite = "nightly" if "nightly" in examples.suites else examples.suites[0]
        lines.append(f"  ANVIL_API_URL={api_url} anvil submit suite {suite} --wait")
    lines.append("Ctrl-C stops everything.")
    say("anvil", "\n".join(lines))


def _demo_thread(
    sup: Supervisor, api_url: str, token: str, case_id: str, then_exit: bool, outcome: list[bool]
) -> None:
    from anvil.http_client import ApiError

    out = Console(file=cast(IO[str], _Prefixed("demo")), width=160, highlight=False)
    try:
        passed = run_demo(api_url, token, case_id, out=out)
    except ApiError as exc:
        say("demo", f"error: {exc}")
        passed = False
    except Exception as exc:  # reported, and --exit-after-demo still ends (with 1)
        say("demo", f"error: {type(exc).__name__}: {exc}")
        passed = False
    outcome.append(passed)
    say("demo", "the sample case PASSED" if passed else "the sample case did not pass")
    if then_exit:
        sup.stopping.set()


def _watch(sup: Supervisor, opts: Options, outcome: list[bool]) -> int:
    demo_deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not sup.stopping.wait(0.2):
        dead = sup.dead()
        if dead is not None:
            say(
                "anvil",
                f"{dead.name} exited unexpectedly with code {dead.proc.returncode}; stopping the rest",
            )
            return 1
        if opts.exit_after_demo and not outcome and time.monotonic() > demo_deadline:
            say("anvil", f"the sample case did not finish within {DEMO_TIMEOUT_S:g}s")
            return 1
    if opts.exit_after_demo and outcome:
        return 0 if outcome[0] else 1
    return 0
