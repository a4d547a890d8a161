"""`anvil dev` running: the standalone stack from start to stop.

It prepares a database (SQLite under ./.anvil unless ANVIL_DATABASE_URL says otherwise), a broker,
the keys, an admin and a token (anvil/cli/bootstrap.py), then runs the same processes as
production — API, worker, beat, Flower — as children of the supervisor (anvil/cli/supervisor.py),
registers the examples and, with --demo, runs the sample case (anvil/cli/demo.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from rich.console import Console

from anvil.cli.bootstrap import (
    Broker,
    StartupError,
    choose_broker,
    ensure_admin,
    port_free,
    sandbox_env,
    secret_key_env,
    secrets_key_env,
    start_redis,
    workspace_root,
)
from anvil.cli.demo import SAMPLE_CASE, Registered, register_examples, run_demo
from anvil.cli.http import ApiError
from anvil.cli.processes import anvil_argv
from anvil.cli.supervisor import Prefixed, Supervisor, say, wait_ready

# --exit-after-demo gives up (exit 1) when the sample case has not finished by then.
DEMO_TIMEOUT_S = 180.0


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
    if opts.flower and not os.environ.get("ANVIL_FLOWER_URL"):
        env["ANVIL_FLOWER_URL"] = f"http://127.0.0.1:{opts.flower_port}"  # the web UI links to it
    if not os.environ.get("ANVIL_PUBLIC_URL"):
        env["ANVIL_PUBLIC_URL"] = f"http://127.0.0.1:{opts.port}"  # links in webhook messages
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
    if not wait_ready(sup, f"{api_url}/readyz"):
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


def _banner(
    api_url: str,
    opts: Options,
    token: str,
    password: str | None,
    data_dir: Path,
    examples: Registered,
) -> None:
    lines = [
        # The web interface first: what a newcomer opens (sign in as admin, password below).
        f"Anvil is up: open {api_url}/ui in a browser  (web interface; sign in as admin)",
        f"API {api_url}  (docs {api_url}/docs)",
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
    out = Console(file=cast(IO[str], Prefixed("demo")), width=160, highlight=False)
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
