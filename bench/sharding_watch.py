"""What the sharding benchmark reads from /proc (Linux) while a run goes on: when its test
processes started and ended, and the CPU time its processes and the rest of the machine used.

The rows say when a shard was claimed and finished and when each of its tests ran; they do not
say when its pytest process started or exited. This watcher samples /proc while a run goes on and
notes each sandboxed pytest process (the parent's ``--collect-only`` and each shard's run): its
start (the kernel's start time of the pid) and the last time it was seen alive, with its chain of
parent pids, which holds the pool process that ran it (a shard's ``worker`` column ends in that
pid). So a shard's startup splits into Anvil's preparation (claim -> process) and pytest's own
start and collection (process -> first test), and its tail into pytest's exit (last test ->
process gone) and Anvil's recording and final write (process gone -> finished_at).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cpu import machine_ticks, with_descendants

TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL_S = 0.02


def _boot_time() -> float:
    """The epoch of the boot, to 1/100 s (/proc/stat's btime is whole seconds)."""
    return time.time() - float(Path("/proc/uptime").read_text().split()[0])


@dataclass
class Seen:
    pid: int
    kind: str  # "collect" (the parent's planning) or "run" (a shard)
    ancestors: tuple[int, ...]
    started: float  # epoch seconds (the kernel's start time of the pid, 1/TICKS resolution)
    last_seen: float


class ProcessWatch:
    def __init__(self) -> None:
        self.boot = _boot_time()
        self.seen: dict[int, Seen] = {}
        self.ignored: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-watch", daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.scan()

    def scan(self) -> None:
        now = time.time()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self.seen:
                if _alive(pid):
                    self.seen[pid].last_seen = now
            elif pid not in self.ignored:
                self._inspect(pid, now)

    def _inspect(self, pid: int, now: float) -> None:
        try:
            started = self.boot + int(_stat(pid)[19]) / TICKS
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            return
        # A new process may not have exec'd yet (a fork shows its parent's command line), and
        # bwrap, setpriv and prlimit carry pytest's words as arguments until the last of them
        # exec's the interpreter: young processes are looked at again at the next scan.
        young = now - started < 2.0
        if b"pytest" not in argv or not os.path.basename(argv[0]).startswith(b"python"):
            if not young:
                self.ignored.add(pid)
            return
        words = [a.decode(errors="replace") for a in argv]
        if "--collect-only" in words:
            kind = "collect"
        elif any(w.startswith(("--anvil-handout", "--anvil-report")) for w in words):
            kind = "run"
        else:
            self.ignored.add(pid)
            return
        self.seen[pid] = Seen(pid, kind, _ancestors(pid), started, now)

    def processes(self, kind: str, pool_pid: int, since: float, until: float) -> list[Seen]:
        """The ``kind`` processes below ``pool_pid`` that started within [since, until]."""
        return sorted(
            (
                s
                for s in self.seen.values()
                if s.kind == kind and pool_pid in s.ancestors and since - 0.05 <= s.started <= until
            ),
            key=lambda s: s.started,
        )


class WorkerCpu:
    """CPU time of the workers' process trees, split into the workers' own (Celery, Anvil's runner,
    the handout, recording steps) and what the test processes they ran and reaped used (the
    sandboxed pytest runs: the parent's collection and the shards)."""

    def __init__(self, workers: list[Any]) -> None:
        self.workers = workers
        self.before: dict[int, tuple[float, float]] = {}

    def read(self) -> dict[int, tuple[float, float]]:
        found = {}
        for pid in (p for w in self.workers for p in with_descendants(w.pid)):
            try:
                fields = _stat(pid)
            except (OSError, IndexError):
                continue
            ticks = [int(v) / TICKS for v in fields[11:15]]
            found[pid] = (ticks[0] + ticks[1], ticks[2] + ticks[3])
        return found

    def start(self) -> None:
        self.before = self.read()

    def stop(self) -> dict[str, float]:
        own = reaped = 0.0
        for pid, (now_own, now_reaped) in self.read().items():
            was_own, was_reaped = self.before.get(pid, (0.0, 0.0))
            own += max(0.0, now_own - was_own)
            reaped += max(0.0, now_reaped - was_reaped)
        return {"worker": own, "tests": reaped}


class MachineCpu:
    """What the rest of the machine used meanwhile: its busy CPU seconds (user, nice, system, irq,
    softirq of every CPU; not steal) less the run's own processes and this one. On a shared
    machine, the reason one run's wall time differs from another's."""

    def __init__(self) -> None:
        self.before: list[int] = []
        self.mine = 0.0

    def start(self) -> None:
        self.before, self.mine = machine_ticks(), _own_cpu()

    def others(self, ours: float) -> float:
        spent = [b - a for a, b in zip(self.before, machine_ticks(), strict=False)]
        busy = sum(spent[i] for i in (0, 1, 2, 5, 6) if i < len(spent)) / TICKS
        return max(0.0, busy - ours - (_own_cpu() - self.mine))


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (it has exited then)."""
    try:
        return _stat(pid)[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ancestors(pid: int) -> tuple[int, ...]:
    chain: list[int] = []
    while pid > 1 and len(chain) < 32:
        try:
            pid = int(_stat(pid)[1])
        except (OSError, IndexError, ValueError):
            break
        chain.append(pid)
    return tuple(chain)
