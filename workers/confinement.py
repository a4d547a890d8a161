"""Where a test process runs: a bubblewrap sandbox, as another uid, with resource limits.

A test is untrusted code from the tested repository; the worker holds the platform's secrets. So
every test process runs under bubblewrap (``bwrap``) in its own PID, IPC and UTS namespaces and its
own mount view:

- the system (``/usr``, ``/etc``, ...) and the worker's Python read-only, Anvil's own packages,
  data directory and secret files hidden under empty mounts;
- the workspace read-only at its own path, under a writable top level (new files such as
  ``--junitxml=report.xml`` can be written next to its entries, which stay read-only);
- a private writable scratch directory (``HOME`` and ``TMPDIR``) and a private ``/tmp``;
- a fresh ``/proc`` that shows only the test's own processes, a minimal ``/dev``.

As another uid: a worker running as root (Docker, CI) switches the test to the sandbox user
(``ANVIL_SANDBOX_USER``) with ``setpriv``; an ordinary user's worker maps the test to another uid in
a user namespace. Either way ``no_new_privs`` is set, capabilities are dropped, and ``prlimit``
sets the limits (address space, processes, CPU time, file size, no core dumps) just before the
test's command starts; where the worker owns a cgroup v2 subtree, memory and processes are limited
by a cgroup per test process instead (workers/cgroups.py). The command line is built here, as
plain data; workers/sandbox.py runs it.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil.settings import SECRET_SETTINGS, Settings
from workers import cgroups

log = logging.getLogger("anvil.worker")

# What a test needs of the host to run programs; bound read-only where present. /etc holds no
# secret of Anvil's (its settings come from the environment or from *_FILE paths, hidden below).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
ANVIL_PACKAGES = ("anvil", "api", "db", "scheduler", "workers")
LINKED_FROM_ETC = ("resolv.conf", "hosts", "localtime")
# A workspace with more top-level entries than this is bound read-only as a whole (one mount an
# entry would make the command line huge); outputs then go to $TMPDIR only.
MAX_OVERLAY_ENTRIES = 512


class SandboxUnavailable(Exception):
    """This worker cannot confine tests as configured (no bwrap, no sandbox user, no namespaces)."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    processes: int
    cpu_s: int
    file_size_mb: int


@dataclass(frozen=True)
class Sandbox:
    """How this worker confines its tests, worked out once per process from the settings."""

    bwrap: str
    # (uid, gid) of the sandbox user when the worker is root; None: a user namespace maps the test.
    switch_to: tuple[int, int] | None
    userns_id: int
    read_only: tuple[str, ...]  # host paths bound read-only at the same place
    hidden: tuple[str, ...]  # paths inside those that the test must not see
    # A delegated cgroup v2 subtree (workers/cgroups.py): memory and processes are limited by a
    # cgroup per test process instead of rlimits. None where there is none (cgroup v1 hosts).
    cgroup_base: Path | None = None


@dataclass(frozen=True)
class Confinement:
    """One test's confinement: the worker's sandbox (None when ANVIL_SANDBOX=off), its limits,
    whether it may use the network, and its private writable directory."""

    sandbox: Sandbox | None
    limits: Limits
    network: bool
    scratch: Path


LIMIT_KEYS = ("memory_mb", "processes", "cpu_s", "file_size_mb")


def default_limits(settings: Settings) -> Limits:
    """The limits a case gets when it asks for none (ANVIL_SANDBOX_MEMORY_MB, ...)."""
    return Limits(**{key: getattr(settings, f"sandbox_{key}") for key in LIMIT_KEYS})


def max_limits(settings: Settings) -> Limits:
    """The most a case may ask for (ANVIL_SANDBOX_MEMORY_MB_MAX, ...)."""
    return Limits(**{key: getattr(settings, f"sandbox_{key}_max") for key in LIMIT_KEYS})


def case_limits(requested: dict[str, Any] | None, *, defaults: Limits, ceiling: Limits) -> Limits:
    """A case's ``limits`` over the worker's defaults, never above the worker's maxima (the API
    refuses larger values when a case is saved; a worker with lower maxima caps them)."""
    requested = requested or {}
    values = {
        key: min(int(requested.get(key, getattr(defaults, key))), getattr(ceiling, key)) for key in LIMIT_KEYS
    }
    return Limits(**values)


def _existing(paths: Iterable[str | Path]) -> list[str]:
    seen: list[str] = []
    for raw in paths:
        path = os.path.abspath(raw)
        if os.path.exists(path) and path not in seen:
            seen.append(path)
    return seen


def _python_paths() -> list[str]:
    """The worker's interpreter and its packages: tests run with the worker's Python (pytest, behave)."""
    exe = Path(sys.executable)
    return _existing([sys.prefix, sys.base_prefix, sys.exec_prefix, exe.parent, exe.resolve().parent.parent])


def link_targets(folder: Path, names: Iterable[str]) -> list[str]:
    """Where the symbolic links among ``folder/name`` lead (the files themselves, not their folders)."""
    return [os.path.realpath(folder / name) for name in names if (folder / name).is_symlink()]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _hidden_paths(settings: Settings, read_only: list[str]) -> list[str]:
    """Anvil's own code, data and secret files, where they lie inside a path the test can read."""
    candidates: list[str] = []
    for name in ANVIL_PACKAGES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            candidates.append(str(Path(module.__file__).resolve().parent))  # type: ignore[arg-type]
    candidates.append(str(settings.data_dir.resolve()))
    for name in SECRET_SETTINGS:
        file = os.environ.get(f"ANVIL_{name.upper()}_FILE")
        if file:
            candidates.append(os.path.abspath(file))
    return [path for path in _existing(candidates) if _under(path, read_only)]


def sandbox_from_settings(settings: Settings, *, with_cgroups: bool = True) -> Sandbox | None:
    """The worker's sandbox, or None when ANVIL_SANDBOX=off. Raises SandboxUnavailable, saying what
    to install or set, when bubblewrap or the sandbox user is missing. ``with_cgroups=False``
    leaves the cgroup tree alone (setting it up moves this process's cgroup into a leaf)."""
    if settings.sandbox == "off":
        return None
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap) "
            "or, only where tests are trusted, set ANVIL_SANDBOX=off"
        )
    switch_to = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(settings.sandbox_user)
        except KeyError:
            raise SandboxUnavailable(
                f"the worker runs as root but the sandbox user {settings.sandbox_user!r} does not exist: "
                f"create it (useradd --system --no-create-home --shell /usr/sbin/nologin "
                f"{settings.sandbox_user}) or name another one with ANVIL_SANDBOX_USER"
            ) from None
        if user.pw_uid == 0:
            raise SandboxUnavailable(f"the sandbox user {settings.sandbox_user!r} must not be root")
        switch_to = (user.pw_uid, user.pw_gid)
    read_only = _existing(SYSTEM_PATHS)
    # Files in /etc may link out of it: resolv.conf into /run on systemd-resolved hosts (no DNS
    # without it).
    outside = link_targets(Path("/etc"), LINKED_FROM_ETC)
    read_only += [p for p in _existing(_python_paths() + outside) if not _under(p, read_only)]
    return Sandbox(
        bwrap=bwrap,
        switch_to=switch_to,
        userns_id=settings.sandbox_userns_id,
        read_only=tuple(read_only),
        hidden=tuple(_hidden_paths(settings, read_only)),
        cgroup_base=_cgroup_base(settings) if with_cgroups else None,
    )


def sandbox_problem(settings: Settings) -> str | None:
    """Why tests could not be sandboxed here as configured, or None (also when it is off): checks
    bubblewrap and the sandbox user, then starts ``true`` in the sandbox once."""
    try:
        sandbox = sandbox_from_settings(settings, with_cgroups=False)
    except SandboxUnavailable as exc:
        return str(exc)
    return probe(sandbox) if sandbox is not None else None


def _cgroup_base(settings: Settings) -> Path | None:
    """The delegated cgroup v2 subtree tests get their cgroups in, prepared; None to use rlimits."""
    if settings.sandbox_cgroup == "off":
        return None
    try:
        base = cgroups.delegated_base()
        cgroups.prepare(base)
        cgroups.remove(cgroups.create(base, memory_mb=64, processes=8))  # can it make one?
    except cgroups.CgroupUnusable as exc:
        log.info("test memory and process limits are rlimits: %s", exc)
        return None
    except OSError as exc:
        log.warning("cannot set up cgroups for tests (%s); their limits are rlimits", exc)
        return None
    log.info("each test process gets a cgroup under %s (memory.max, pids.max)", base)
    return base


_sandboxes: dict[int, Sandbox | None] = {}


def worker_sandbox(settings: Settings) -> Sandbox | None:
    """This process's sandbox, worked out on first use (``anvil worker`` checked it at start-up)."""
    if os.getpid() not in _sandboxes:
        _sandboxes[os.getpid()] = sandbox_from_settings(settings)
    return _sandboxes[os.getpid()]


def _parents(paths: Iterable[str]) -> list[str]:
    """Create the parents of the mount points as traversable directories (bwrap makes the ones it
    needs mode 0700, which the sandbox user could not pass through)."""
    made: list[str] = []
    args: list[str] = []
    for path in paths:
        for parent in reversed(Path(path).parents[:-1] if len(Path(path).parents) > 1 else []):
            name = str(parent)
            if name not in made:
                made.append(name)
                args += ["--perms", "0755", "--dir", name]
    return args


def _mount(flag: str, path: str) -> list[str]:
    """Bind ``path`` at the same place; a symlink (merged /usr: /bin -> usr/bin) stays a symlink."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    return [flag, path, path]


def _workspace_mounts(cwd: Path) -> list[str]:
    """The workspace read-only under a writable top level: a tmpfs at its path holding a read-only
    bind of each of its entries (bwrap resolves sources on the host, so they are not shadowed)."""
    try:
        entries = sorted(os.listdir(cwd))
    except OSError:
        entries = []
    if len(entries) > MAX_OVERLAY_ENTRIES:
        return ["--ro-bind", str(cwd), str(cwd)]
    args = ["--perms", "0777", "--tmpfs", str(cwd)]
    for entry in entries:
        path = str(cwd / entry)
        args += ["--symlink", os.readlink(path), path] if os.path.islink(path) else ["--ro-bind", path, path]
    return args


def prlimit_argv(limits: Limits, *, in_cgroup: bool = False) -> list[str]:
    """The rlimits; in a cgroup of its own, memory and processes are the cgroup's business."""
    mib = 1024 * 1024
    by_cgroup = [] if in_cgroup else [f"--as={limits.memory_mb * mib}", f"--nproc={limits.processes}"]
    return [
        "prlimit",
        *by_cgroup,
        # SIGXCPU at the soft limit (the test may report it), SIGKILL a second later.
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
        f"--fsize={limits.file_size_mb * mib}",
        "--core=0",
        "--",
    ]


def wrap(argv: list[str], *, confinement: Confinement, cwd: Path, cgroup: Path | None = None) -> list[str]:
    """The full command line that runs ``argv`` in ``cwd`` under ``confinement`` (and, when given,
    in the test's own ``cgroup``, entered before bubblewrap starts)."""
    limited = prlimit_argv(confinement.limits, in_cgroup=cgroup is not None) + argv
    sandbox = confinement.sandbox
    if sandbox is None:
        return limited
    args = (cgroups.enter_argv(cgroup) if cgroup is not None else []) + [sandbox.bwrap]
    args += ["--die-with-parent", "--new-session"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not confinement.network:
        args.append("--unshare-net")
    if sandbox.switch_to is None:
        args += ["--unshare-user", "--uid", str(sandbox.userns_id), "--gid", str(sandbox.userns_id)]
    args += ["--hostname", "anvil-test", "--proc", "/proc", "--dev", "/dev"]
    # A shared-memory directory the test can write (bwrap's is root's): multiprocessing needs it.
    args += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    # The private /tmp first: a mount made under /tmp before it (a venv in /tmp/...) would be hidden.
    args += _parents(["/var/tmp"])
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/var/tmp"]
    args += _parents(sandbox.read_only)
    for path in sandbox.read_only:
        args += _mount("--ro-bind", path)
    for path in sandbox.hidden:
        args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
    args += _parents([str(cwd), str(confinement.scratch)])
    args += _workspace_mounts(cwd)
    scratch = str(confinement.scratch)
    args += ["--bind", scratch, scratch, "--chdir", str(cwd), "--"]
    inside = ["setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    if sandbox.switch_to is not None:
        uid, gid = sandbox.switch_to
        inside += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return args + inside + ["--"] + limited


def prepare_scratch(scratch: Path, sandbox: Sandbox | None) -> None:
    """Make ``scratch`` (and what is in it) the test's own: owned by the sandbox user when the
    worker is root (in a user namespace the worker's uid is the test's)."""
    if sandbox is None or sandbox.switch_to is None:
        return
    uid, gid = sandbox.switch_to
    for path in [scratch, *scratch.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def probe(sandbox: Sandbox) -> str | None:
    """Start ``true`` in the sandbox once: None when it works, else what bwrap said."""
    # An empty directory of its own, where tests' scratch directories go, as workspace and scratch:
    # the workspace's entries are bound one by one, and in a shared /tmp one may vanish meanwhile.
    with tempfile.TemporaryDirectory(prefix="anvil-probe-") as empty:
        argv = wrap(
            ["true"],
            confinement=Confinement(sandbox, Limits(256, 64, 10, 16), True, Path(empty)),
            cwd=Path(empty),
        )
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


# What a program prints when an allocation, a fork or a write hit its limit.
_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory")
_PROCESSES = re.compile(r"Cannot fork|fork: (?:retry: )?Resource temporarily unavailable|BlockingIOError")
_FILE_SIZE = re.compile(r"File size limit exceeded")


def limit_reached(
    exit_code: int | None, output: str, limits: Limits, *, enforced: str | None = None
) -> str | None:
    """Which limit ended a failed test process, named for people, or None. ``enforced``: what the
    test's cgroup says the kernel enforced ("memory", "processes"), believed before the output."""
    if exit_code in (None, 0):
        return None
    if enforced == "memory":
        return f"memory limit reached ({limits.memory_mb} MiB)"
    if enforced == "processes":
        return f"process limit reached ({limits.processes} processes)"
    if exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return f"CPU time limit reached ({limits.cpu_s} s)"
    if exit_code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or _FILE_SIZE.search(output):
        return f"file size limit reached ({limits.file_size_mb} MiB)"
    if _MEMORY.search(output):
        return f"memory limit reached ({limits.memory_mb} MiB)"
    if _PROCESSES.search(output):
        return f"process limit reached ({limits.processes} processes)"
    return None
