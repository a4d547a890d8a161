"""CPU time the processes of one benchmark phase spent, read from /proc (Linux).

Throughput on a busy machine depends on what else runs; CPU time per task barely does. So the
bench also reports CPU milliseconds per task by process group, and the rate those would allow
if the phase had every CPU to itself (nproc seconds of CPU per second).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` (all threads) and of the children it reaped (the test
    processes a worker ran); 0 when it is gone."""
    fields = _stat(pid)
    return sum(int(v) for v in fields[11:15]) / TICKS if fields else 0.0


def with_descendants(root: int) -> list[int]:
    """``root`` and every live process below it (a Celery worker's pool, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def machine_ticks() -> list[int]:
    """The machine's CPU time by kind since boot (/proc/stat: user, nice, system, idle, iowait,
    irq, softirq, steal, ...)."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other guests in between (steal):
    on a shared virtual machine, the reason one run's wall-clock rates differ from another's."""
    if len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(spent[:8])
    return spent[7] / total if total else None


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes between start() and stop(), and the share of
    the machine's CPU time stolen meanwhile (``stolen``)."""

    groups: dict[str, Callable[[], list[int]]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: list[int] = field(default_factory=list)
    stolen: float | None = None

    def start(self) -> None:
        self._before = {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}
        self._machine = machine_ticks()

    def stop(self) -> dict[str, float]:
        self.stolen = steal_share(self._machine, machine_ticks())
        spent = {}
        for name, pids in self.groups.items():
            before = self._before.get(name, {})
            # Processes that appeared meanwhile count from zero; ones that exited are lost.
            spent[name] = sum(max(0.0, cpu_seconds(pid) - before.get(pid, 0.0)) for pid in set(pids()))
        return spent
