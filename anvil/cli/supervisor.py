"""The supervisor of `anvil dev`: its children (API, worker, beat, Flower, a private redis-server)
with prefixed output, and their stop: all of them on Ctrl-C / SIGTERM / SIGHUP or when one dies.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from anvil.cli.processes import Child

STOP_GRACE_S = 10.0
_print_lock = threading.Lock()


def say(role: str, text: str) -> None:
    """One line of output prefixed with the role it came from (``api    | …``)."""
    with _print_lock:
        for line in text.splitlines() or [""]:
            sys.stdout.write(f"{role:<6} | {line}\n")
        sys.stdout.flush()


class Prefixed(io.TextIOBase):
    """A text stream (for rich) that prints complete lines through ``say``."""

    def __init__(self, role: str) -> None:
        self.role, self.pending = role, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            say(self.role, line)
        return len(text)


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


def wait_ready(sup: Supervisor, url: str, timeout_s: float = 90.0) -> bool:
    """Whether the stack came up: the API at ``url`` answers ready and the worker consumes."""
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
