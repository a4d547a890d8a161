"""Start Anvil's own processes (api, worker, beat, flower) as children, and wait for them.

Used by the standalone supervisor (`anvil dev`), the end-to-end and fault tests, and the benchmark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


def anvil_argv(*args: str) -> list[str]:
    """argv that runs the `anvil` command with this interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "anvil.cli", *args]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (Celery: warm shutdown), then SIGKILL the group if it does not exit in time."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the child and its whole process group (a worker's pool children too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def spawn(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | IO[bytes] | None = None,
    cwd: Path | None = None,
    wrapper: Sequence[str] = (),
) -> Child:
    """Start ``anvil <args>`` in its own process group, output to ``log`` (a path or an open file).

    ``wrapper``: a command that runs it, e.g. ``["faketime", "-f", "+10m"]`` (the fault tests).
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = log if isinstance(log, Path) else None
    out: IO[bytes] | int
    if isinstance(log, Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115  (the child owns it; closed when the parent exits)
    else:
        out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*wrapper, *anvil_argv(*args)],
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    )
    return Child(name, proc, log_path)


def wait_http(url: str, *, timeout: float = 30.0, child: Child | None = None) -> None:
    """Wait until ``url`` answers 200; fail early if ``child`` died."""
    deadline = time.monotonic() + timeout
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def wait_log(child: Child, needle: str, *, timeout: float = 30.0) -> None:
    """Wait until ``needle`` appears in the child's log file (e.g. Celery's "ready.")."""
    assert child.log_path is not None, "wait_log needs a child started with a log path"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log_path.exists() and needle in child.log_path.read_text(errors="replace"):
            return
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log_path}")
        time.sleep(0.1)
    raise TimeoutError(f"{child.name} did not log {needle!r} within {timeout}s; see {child.log_path}")
