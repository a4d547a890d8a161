"""The cgroup v2 side of the sandbox, on files that stand in for a cgroup hierarchy.

The machines this project is tested on keep the memory controller on cgroup v1, so the kernel's
side (limits enforced, processes moved) cannot be exercised here; what is checked is what Anvil
reads and writes, and that the entering prefix really execs the test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from workers import cgroups


def hierarchy(root: Path, own: str, controllers: str = "cpu memory pids io") -> Path:
    (root / "cgroup.controllers").write_text(controllers + "\n")
    base = root / own.lstrip("/")
    base.mkdir(parents=True, exist_ok=True)
    files = {"cgroup.controllers": controllers, "cgroup.subtree_control": "", "cgroup.procs": ""}
    for name, text in files.items():
        (base / name).write_text(text + "\n")
    return base


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/system.slice/anvil-worker.service\n", "/system.slice/anvil-worker.service"),
        ("12:memory:/x\n1:name=systemd:/y\n0::/\n", "/"),
        ("4:memory:/process_api/abc\n1:cpu:/\n", None),  # cgroup v1 only
    ],
)
def test_own_cgroup_is_the_v2_line(text: str, expected: str | None) -> None:
    assert cgroups.own_cgroup(text) == expected


def test_a_hybrid_or_v1_host_uses_rlimits(tmp_path: Path) -> None:
    with pytest.raises(cgroups.CgroupUnusable, match="not a cgroup v2 hierarchy"):
        cgroups.delegated_base(tmp_path, "0::/\n")


def test_the_delegated_base_needs_memory_and_pids(tmp_path: Path) -> None:
    hierarchy(tmp_path, "/svc", controllers="cpu pids")
    with pytest.raises(cgroups.CgroupUnusable, match="memory controller"):
        cgroups.delegated_base(tmp_path, "0::/svc\n")


def test_a_pool_process_in_the_leaf_finds_the_same_base(tmp_path: Path) -> None:
    base = hierarchy(tmp_path, "/svc")
    assert cgroups.delegated_base(tmp_path, "0::/svc\n") == base
    (base / cgroups.LEAF).mkdir()
    assert cgroups.delegated_base(tmp_path, f"0::/svc/{cgroups.LEAF}\n") == base


def test_prepare_hands_memory_and_pids_to_the_children(tmp_path: Path) -> None:
    base = hierarchy(tmp_path, "/svc")
    cgroups.prepare(base)
    assert (base / cgroups.LEAF).is_dir()
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_a_test_cgroup_carries_its_limits_and_is_entered_before_the_command(tmp_path: Path) -> None:
    base = hierarchy(tmp_path, "/svc")
    path = cgroups.create(base, memory_mb=256, processes=64)
    assert path.parent == base and path.name.startswith(cgroups.TEST_PREFIX)
    assert (path / "memory.max").read_text() == str(256 * 1024 * 1024)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "pids.max").read_text() == "64"
    # The prefix writes the process's own pid into cgroup.procs, then execs the command as that pid.
    done = subprocess.run(
        [*cgroups.enter_argv(path), "sh", "-c", "echo $$; echo 'a b' \"$1\"", "x", "quoted arg"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid, args = done.stdout.splitlines()
    assert (path / "cgroup.procs").read_text().strip() == pid
    assert args == "a b quoted arg"


@pytest.mark.parametrize(
    ("memory_events", "pids_events", "expected"),
    [
        ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n", "max 0\n", None),
        ("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n", "max 0\n", "memory"),
        ("oom_kill 0\n", "max 2\n", "processes"),
    ],
)
def test_which_limit_the_kernel_enforced(
    tmp_path: Path, memory_events: str, pids_events: str, expected: str | None
) -> None:
    (tmp_path / "memory.events").write_text(memory_events)
    (tmp_path / "pids.events").write_text(pids_events)
    assert cgroups.limit_hit(tmp_path) == expected
