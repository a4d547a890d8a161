"""Memory and process limits from a cgroup v2 subtree delegated to the worker, where there is one.

``RLIMIT_AS`` (workers/confinement.py) limits address space, not memory: runtimes that reserve far
more than they use (the JVM, Go, Node) hit it early, and which limit ended a test has to be read
from what it printed. Where the worker owns a cgroup v2 subtree — systemd's ``Delegate=yes``, or a
container with its own cgroup namespace and a writable ``/sys/fs/cgroup`` — every test process
gets a cgroup of its own instead: ``memory.max`` (no swap) and ``pids.max``. The kernel then counts
what the test really uses, kills it at the limit, and ``memory.events`` says that it did.

Layout: cgroup v2 lets a cgroup hand controllers to its children only while it holds no process
itself, so the worker first moves every process of its own cgroup into the leaf ``anvil-worker``,
enables ``memory`` and ``pids`` for the children, and creates ``anvil-test-<id>`` beside that leaf
for each test process; the test enters it before bubblewrap starts.

Hosts with the memory controller on cgroup v1 (hybrid layouts, like the machines this project is
developed and tested on) have no ``cgroup.controllers`` at ``/sys/fs/cgroup``: nothing here is used
there, and the limits stay rlimits.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
LEAF = "anvil-worker"
TEST_PREFIX = "anvil-test-"
MIB = 1024 * 1024


class CgroupUnusable(Exception):
    """The worker's cgroup cannot hold per-test cgroups (not v2, not delegated, no controllers)."""


def own_cgroup(proc_self_cgroup: str) -> str | None:
    """This process's cgroup v2 path from ``/proc/self/cgroup`` (the ``0::/path`` line), or None."""
    for line in proc_self_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def delegated_base(root: Path = ROOT, proc_self_cgroup: str | None = None) -> Path:
    """The cgroup the worker may manage: its own, on a pure cgroup v2 hierarchy, with the memory and
    pids controllers available and writable by the worker. CgroupUnusable says why not."""
    if not (root / "cgroup.controllers").is_file():
        raise CgroupUnusable(f"{root} is not a cgroup v2 hierarchy (cgroup v1 or hybrid layout)")
    text = proc_self_cgroup if proc_self_cgroup is not None else Path("/proc/self/cgroup").read_text()
    relative = own_cgroup(text)
    if relative is None:
        raise CgroupUnusable("this process is in no cgroup v2 group")
    base = root / relative.lstrip("/")
    if base.name == LEAF:  # a pool process, already moved into the worker's leaf
        base = base.parent
    try:
        available = set((base / "cgroup.controllers").read_text().split())
    except OSError as exc:
        raise CgroupUnusable(f"cannot read {base}/cgroup.controllers: {exc.strerror}") from None
    missing = {"memory", "pids"} - available
    if missing:
        raise CgroupUnusable(f"{base} does not offer the {' and '.join(sorted(missing))} controller")
    if not os.access(base, os.W_OK) or not os.access(base / "cgroup.subtree_control", os.W_OK):
        raise CgroupUnusable(f"{base} is not delegated to this user (not writable)")
    return base


def prepare(base: Path) -> None:
    """Move every process of ``base`` into its leaf and hand memory and pids to its children."""
    leaf = base / LEAF
    leaf.mkdir(exist_ok=True)
    for _ in range(3):  # processes may fork while they are moved
        pids = (base / "cgroup.procs").read_text().split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, OSError):
                (leaf / "cgroup.procs").write_text(pid)
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    if not {"memory", "pids"} <= enabled:
        (base / "cgroup.subtree_control").write_text("+memory +pids")


def create(base: Path, *, memory_mb: int, processes: int) -> Path:
    """A cgroup for one test process, with its limits set."""
    path = base / f"{TEST_PREFIX}{uuid.uuid4().hex}"
    path.mkdir()
    (path / "memory.max").write_text(str(memory_mb * MIB))
    with contextlib.suppress(OSError):  # no swap accounting on this kernel: nothing to turn off
        (path / "memory.swap.max").write_text("0")
    (path / "pids.max").write_text(str(processes))
    return path


def enter_argv(path: Path) -> list[str]:
    """A prefix that moves the process into ``path`` and then execs the rest of the command line
    (Python's subprocess cannot start a child inside a cgroup, so the child moves itself)."""
    return ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "anvil-cgroup", str(path)]


def _event(path: Path, file: str, key: str) -> int:
    try:
        for line in (path / file).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def limit_hit(path: Path) -> str | None:
    """Which of ``path``'s limits the kernel enforced: "memory" (a process was killed at
    memory.max), "processes" (a fork was refused at pids.max), or None."""
    if _event(path, "memory.events", "oom_kill") > 0:
        return "memory"
    if _event(path, "pids.events", "max") > 0:
        return "processes"
    return None


def remove(path: Path) -> None:
    """Kill what is left in ``path`` and remove it (a cgroup with processes cannot be removed)."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")  # Linux 5.14+
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
