"""Run one test process: confined (workers/confinement.py), own process group, timeouts that kill
the group, capped output, scrubbed env.

Commands come from test-case definitions made by privileged users; submissions only name cases.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from workers import cgroups
from workers.confinement import Confinement, limit_reached, wrap

# Variables a test may see from the worker's environment; everything else (ANVIL_*, broker and
# database URLs, secrets) stays out.
PASSTHROUGH = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")


def scrubbed_env(extra: Mapping[str, str] | None = None, passthrough: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSTHROUGH or k in passthrough or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra or {})
    return env


@dataclass
class ProcessResult:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    stopped: bool  # stopped from outside (cancelled, or the attempt lost its lease)
    duration_s: float
    limit: str | None = None  # the resource limit that ended it, named for people


class _CappedBuffer:
    """Keeps the first and last ``cap/2`` bytes of a stream and counts what it dropped."""

    def __init__(self, cap: int) -> None:
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            excess = len(self.tail) - self.half
            if excess > 0:
                del self.tail[:excess]
                self.dropped += excess

    def text(self) -> tuple[str, bool]:
        data = bytes(self.head)
        if self.dropped:
            data += f"\n... [{self.dropped} bytes of output truncated] ...\n".encode()
        data += bytes(self.tail)
        return data.replace(b"\x00", b"").decode("utf-8", errors="replace"), self.dropped > 0


REGISTRY = Path(tempfile.gettempdir()) / f"anvil-sandbox-{os.getuid()}"
# util-linux's setpriv sets the parent-death signal before exec'ing the test: if the worker process
# is killed, the test's leader gets SIGKILL (the rest of its group is swept by sweep_orphans).
SETPRIV = shutil.which("setpriv")


def _with_pdeathsig(argv: list[str]) -> list[str]:
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else argv


def _missing(command: str, cwd: Path, env: Mapping[str, str]) -> str | None:
    """Why ``command`` cannot be started, or None (checked up front: setpriv would hide it as exit 127)."""
    if "/" in command:
        path = cwd / command
        return None if os.access(path, os.X_OK) and path.is_file() else f"{command} is not an executable file"
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    return None if found else f"{command!r} is not on the test's PATH"


PR_SET_CHILD_SUBREAPER = 36
_subreaper = False


def become_subreaper() -> bool:
    """Adopt every orphan among this process's descendants (Linux), so a test process that detached
    with ``setsid`` is re-parented here, not to init, and is killed when its test ends.

    Called once in each worker pool process; elsewhere (tests, the API) nothing is adopted.
    """
    global _subreaper
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


def _own_children() -> list[int]:
    children: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as handle:
                children += [int(pid) for pid in handle.read().split()]
    except OSError:
        pass
    return children


def kill_adopted() -> int:
    """Kill and reap what this subreaper adopted: processes a finished test left behind in other
    sessions. Only test processes are ever children of a pool process, and it runs one at a time."""
    if not _subreaper:
        return 0
    killed = 0
    for _ in range(3):  # a dying intermediate may hand over its children a moment later
        adopted = _own_children()
        if not adopted:
            break
        for pid in adopted:
            kill_tree(pid, thorough=True)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            killed += 1
        time.sleep(0.02)
    return killed


def _register(pgid: int) -> Path | None:
    """Note a running test's process group, so a sibling can kill it if this process dies."""
    try:
        REGISTRY.mkdir(mode=0o700, exist_ok=True)
        entry = REGISTRY / f"{os.getpid()}.{pgid}"
        entry.touch()
        return entry
    except OSError:
        return None


def sweep_orphans() -> int:
    """Kill the process groups of tests whose worker process died (called as work starts)."""
    killed = 0
    try:
        entries = list(REGISTRY.iterdir())
    except OSError:
        return 0
    for entry in entries:
        owner, _, pgid = entry.name.partition(".")
        if not (owner.isdigit() and pgid.isdigit()) or _alive(int(owner)):
            continue
        kill_tree(int(pgid), thorough=True)
        entry.unlink(missing_ok=True)
        killed += 1
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_limited_pids: set[int] = set()


def _limit_this_process() -> None:
    """No core dumps, bounded open files: set once in the worker process, inherited by every test.

    Setting them in the child instead (a preexec_fn) forces a full fork of the worker per step,
    several milliseconds each, and is unsafe while other threads (the heartbeat) run.
    """
    if os.getpid() in _limited_pids:
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    _limited_pids.add(os.getpid())


def kill_tree(leader_pid: int, *, thorough: bool) -> None:
    """SIGKILL the test's process group, and anything still in its session (even after setpgid).

    The /proc scan costs a few milliseconds, so a clean exit with an empty group skips it.
    """
    try:
        os.killpg(leader_pid, signal.SIGKILL)
        thorough = True  # something was left behind: look for strays in the session as well
    except (ProcessLookupError, PermissionError):
        pass
    if not thorough:
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgid, sid = int(fields[2]), int(fields[3])
        if leader_pid in (pgid, sid):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _exit_watch(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _read_available(fd: int, buf: _CappedBuffer) -> bool:
    """Read what the pipe holds now (at most 1 MiB, so a flood of output cannot keep the caller
    from its timeouts); False at end of file (every writer gone)."""
    for _ in range(16):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buf.feed(chunk)
    return True


def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    output_cap: int,
    stop: threading.Event | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 0.1,
    confinement: Confinement | None = None,
) -> ProcessResult:
    """Run ``argv`` (never through a shell) until it exits, times out, or ``stop`` is set.

    With ``confinement`` it runs in the sandbox, as the sandbox user, within its limits, with
    ``HOME`` and ``TMPDIR`` in its scratch directory. ``on_tick`` is called about every ``tick_s``
    while the process runs (to read live progress). Whatever way it ends, the whole process group
    (with a sandbox: its PID namespace) is killed before returning.
    """
    _limit_this_process()
    started = time.monotonic()
    buf = _CappedBuffer(output_cap)
    missing = _missing(argv[0], cwd, env)
    if missing:
        return ProcessResult(None, f"cannot start {argv[0]!r}: {missing}", False, False, False, 0.0)
    command = argv
    cgroup = None
    if confinement is not None:
        base = confinement.sandbox.cgroup_base if confinement.sandbox is not None else None
        if base is not None:
            limits = confinement.limits
            cgroup = cgroups.create(base, memory_mb=limits.memory_mb, processes=limits.processes)
        command = wrap(argv, confinement=confinement, cwd=cwd, cgroup=cgroup)
        scratch = str(confinement.scratch)
        env = {k: v for k, v in env.items() if k not in ("USER", "LOGNAME")}
        env.update(HOME=scratch, TMPDIR=scratch)
    try:
        proc = subprocess.Popen(
            _with_pdeathsig(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        if cgroup is not None:
            cgroups.remove(cgroup)
        return ProcessResult(
            None, f"cannot start {argv[0]!r}: {exc.strerror or exc}", False, False, False, 0.0
        )

    # One loop waits for the exit (a pidfd wakes it the moment the test ends), reads the output
    # as it comes and calls on_tick: no reader thread to start per step, no polling sleeps.
    registered = _register(proc.pid)
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    os.set_blocking(out, False)
    exit_watch = _exit_watch(proc.pid)
    # Without a pidfd (old kernels) the exit is polled at short intervals instead.
    wait_s = tick_s if exit_watch is not None else min(tick_s, 0.01)
    deadline = started + timeout_s
    next_tick = started + tick_s
    timed_out = stopped = exited = False
    open_pipe = True
    try:
        while True:
            watched = [fd for fd in (exit_watch, out if open_pipe else None) if fd is not None]
            ready = select.select(watched, [], [], wait_s)[0]
            if out in ready:
                open_pipe = _read_available(out, buf)
            if exit_watch in ready or (exit_watch is None and proc.poll() is not None):
                exited = True
                break
            now = time.monotonic()
            if on_tick is not None and now >= next_tick:
                on_tick()
                next_tick = now + tick_s
            if stop is not None and stop.is_set():
                stopped = True
                break
            if now >= deadline:
                timed_out = True
                break
    finally:  # even when on_tick raises, nothing of the test outlives this call
        if exit_watch is not None:
            os.close(exit_watch)
        if exited:
            proc.wait()  # reap the leader first: a zombie still counts as a member of its group
        kill_tree(proc.pid, thorough=not exited)
        exit_code = proc.wait()
        if registered is not None:
            registered.unlink(missing_ok=True)
        kill_adopted()
        enforced = cgroups.limit_hit(cgroup) if cgroup is not None else None
        if cgroup is not None:
            cgroups.remove(cgroup)
    # Whatever held the pipe is dead now, so it reaches end of file: keep what is left in it.
    drain_until = time.monotonic() + 5
    while open_pipe and select.select([out], [], [], max(0.0, drain_until - time.monotonic()))[0]:
        open_pipe = _read_available(out, buf)
    proc.stdout.close()
    if on_tick is not None:
        on_tick()
    output, truncated = buf.text()
    code = None if (timed_out or stopped) else exit_code
    limit = None
    if confinement is not None and code:
        if confinement.sandbox is not None and code == 1 and output.startswith("bwrap: "):
            # bubblewrap itself failed (a mount, a namespace): the test never started.
            output, code = "the sandbox could not start the test: " + output.strip(), None
        else:
            limit = limit_reached(code, output, confinement.limits, enforced=enforced)
    return ProcessResult(code, output, truncated, timed_out, stopped, time.monotonic() - started, limit)
