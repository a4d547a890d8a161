"""The sandbox's command line and limit policy, as plain data (no process is started here)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from workers import cgroups
from workers.confinement import Confinement, Limits, Sandbox, case_limits, limit_reached, link_targets, wrap

LIMITS = Limits(memory_mb=256, processes=64, cpu_s=30, file_size_mb=10)
DEFAULTS = Limits(memory_mb=4096, processes=512, cpu_s=3600, file_size_mb=4096)
CEILING = Limits(memory_mb=8192, processes=1024, cpu_s=7200, file_size_mb=8192)


@pytest.mark.parametrize(
    ("exit_code", "output", "expected"),
    [
        (0, "MemoryError", None),  # passed: no limit ended it, whatever it printed
        (None, "", None),  # timed out or stopped: said elsewhere
        (1, "Traceback ...\nMemoryError\n", "memory limit reached (256 MiB)"),
        (134, "terminate called after throwing 'std::bad_alloc'", "memory limit reached (256 MiB)"),
        (1, "cc1: out of memory allocating 123 bytes", "memory limit reached (256 MiB)"),
        (2, "sh: 0: Cannot fork", "process limit reached (64 processes)"),
        (1, "bash: fork: retry: Resource temporarily unavailable", "process limit reached (64 processes)"),
        (128 + signal.SIGXCPU, "", "CPU time limit reached (30 s)"),
        (-signal.SIGXCPU, "", "CPU time limit reached (30 s)"),
        (128 + signal.SIGXFSZ, "", "file size limit reached (10 MiB)"),
        (1, "File size limit exceeded (core dumped)", "file size limit reached (10 MiB)"),
        (1, "AssertionError: 1 != 2", None),
        (137, "Killed", None),
    ],
)
def test_which_limit_ended_a_process(exit_code: int | None, output: str, expected: str | None) -> None:
    assert limit_reached(exit_code, output, LIMITS) == expected


@pytest.mark.parametrize(
    ("exit_code", "enforced", "expected"),
    [
        (137, "memory", "memory limit reached (256 MiB)"),  # killed at memory.max: output says nothing
        (2, "processes", "process limit reached (64 processes)"),
        (0, "memory", None),  # it passed all the same
        (128 + signal.SIGXCPU, None, "CPU time limit reached (30 s)"),
    ],
)
def test_what_the_cgroup_says_comes_first(exit_code: int, enforced: str | None, expected: str | None) -> None:
    assert limit_reached(exit_code, "", LIMITS, enforced=enforced) == expected


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, DEFAULTS),
        ({}, DEFAULTS),
        ({"memory_mb": 256}, Limits(256, 512, 3600, 4096)),
        ({"processes": 5000, "cpu_s": 10}, Limits(4096, 1024, 10, 4096)),  # capped by this worker's maximum
    ],
)
def test_a_case_asks_for_limits_up_to_the_workers_maximum(requested: dict | None, expected: Limits) -> None:
    assert case_limits(requested, defaults=DEFAULTS, ceiling=CEILING) == expected


def sandbox(switch_to: tuple[int, int] | None, hidden: tuple[str, ...] = ()) -> Sandbox:
    return Sandbox(
        bwrap="/usr/bin/bwrap",
        switch_to=switch_to,
        userns_id=10002,
        read_only=("/usr", "/etc", "/srv/venv"),
        hidden=hidden,
    )


def after(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_a_root_worker_switches_the_test_to_the_sandbox_user(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    package = tmp_path / "site-packages" / "anvil"
    package.mkdir(parents=True)
    settings_file = tmp_path / "secret_key"
    settings_file.write_text("k")
    root = sandbox((999, 995), hidden=(str(package), str(settings_file)))
    args = wrap(["pytest", "-q"], confinement=Confinement(root, LIMITS, True, scratch), cwd=tmp_path)
    split = args.index("--")
    bwrap, inside = args[:split], args[split + 1 :]
    assert bwrap[0] == "/usr/bin/bwrap" and "--unshare-pid" in bwrap and "--die-with-parent" in bwrap
    assert "--unshare-user" not in bwrap and "--unshare-net" not in bwrap  # network stays on by default
    assert after(bwrap, "--ro-bind")[:2] == ["/usr", "/etc"]
    assert str(package) in after(bwrap, "--tmpfs")  # Anvil's code hidden under an empty directory
    at = args.index(str(settings_file))
    assert args[at - 2 : at] == ["--ro-bind", "/dev/null"]  # a secret file: an empty one over it
    assert after(bwrap, "--bind") == [str(scratch)]  # the only writable host directory
    assert after(bwrap, "--chdir") == [str(tmp_path)]
    assert inside[:4] == ["setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    assert "--reuid=999" in inside and "--regid=995" in inside and "--clear-groups" in inside
    limits = inside[inside.index("prlimit") :]
    assert limits[:7] == [
        "prlimit",
        f"--as={256 * 1024 * 1024}",
        "--nproc=64",
        "--cpu=30:31",
        f"--fsize={10 * 1024 * 1024}",
        "--core=0",
        "--",
    ]
    assert limits[7:] == ["pytest", "-q"]


def test_an_ordinary_worker_maps_the_test_to_another_uid_and_can_cut_the_network(tmp_path: Path) -> None:
    confinement = Confinement(sandbox(None), LIMITS, False, tmp_path / "scratch")
    args = wrap(["true"], confinement=confinement, cwd=tmp_path)
    bwrap = args[: args.index("--")]
    assert "--unshare-user" in bwrap
    assert after(bwrap, "--uid") == ["10002"] and after(bwrap, "--gid") == ["10002"]
    assert "--unshare-net" in bwrap
    assert not any(a.startswith("--reuid") for a in args)


def test_without_a_sandbox_the_limits_still_apply(tmp_path: Path) -> None:
    args = wrap(["true"], confinement=Confinement(None, LIMITS, True, tmp_path), cwd=tmp_path)
    assert args[0] == "prlimit" and args[-2:] == ["--", "true"]


def test_the_workspace_is_read_only_under_a_writable_top_level(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "setup.cfg").write_text("")
    (tmp_path / "link").symlink_to("tests")
    args = wrap(["true"], confinement=Confinement(sandbox(None), LIMITS, True, tmp_path / "s"), cwd=tmp_path)
    at = args.index(str(tmp_path), args.index("--tmpfs", args.index("/var/tmp")))
    assert args[at - 1] == "--tmpfs"
    assert after(args, "--ro-bind")[-2:] == [str(tmp_path / "setup.cfg"), str(tmp_path / "tests")]
    link = args.index(str(tmp_path / "link"))
    assert args[link - 2 : link + 1] == ["--symlink", "tests", str(tmp_path / "link")]


def test_anvil_dev_runs_unsandboxed_with_a_warning_where_bubblewrap_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from anvil.cli.bootstrap import sandbox_env
    from anvil.settings import Settings

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    assert sandbox_env(Settings(sandbox="bwrap")) == {"ANVIL_SANDBOX": "off"}
    assert "WARNING: tests run UNSANDBOXED" in capsys.readouterr().out
    assert sandbox_env(Settings(sandbox="off")) == {}  # already off: nothing to add


def test_a_python_under_tmp_is_mounted_after_the_private_tmp(tmp_path: Path) -> None:
    root = Sandbox("/usr/bin/bwrap", (999, 995), 10002, ("/usr", "/tmp/ci/main/.venv"), ())
    args = wrap(["true"], confinement=Confinement(root, LIMITS, True, tmp_path / "s"), cwd=tmp_path)
    private_tmp = next(i for i, a in enumerate(args) if a == "/tmp" and args[i - 1] == "--tmpfs")
    venv = args.index("/tmp/ci/main/.venv")
    assert private_tmp < venv and args[venv - 1] == "--ro-bind"
    # Its parents are made traversable for the sandbox user (bwrap would make them 0700).
    assert args[args.index("/tmp/ci") - 3 : args.index("/tmp/ci")] == ["--perms", "0755", "--dir"]
    var = args.index("/var")
    assert args[var - 1] == "--dir" and var < args.index("/var/tmp")


def test_in_a_cgroup_memory_and_processes_are_the_cgroups_business(tmp_path: Path) -> None:
    cgroup = tmp_path / "anvil-test-1"
    root = Sandbox("/usr/bin/bwrap", (999, 995), 10002, ("/usr",), (), cgroup_base=tmp_path)
    confinement = Confinement(root, LIMITS, True, tmp_path / "s")
    args = wrap(["true"], confinement=confinement, cwd=tmp_path, cgroup=cgroup)
    assert args[:5] == cgroups.enter_argv(cgroup) and args[5] == "/usr/bin/bwrap"  # entered first
    limits = args[args.index("prlimit") :]
    assert not any(a.startswith(("--as=", "--nproc=")) for a in limits)
    assert "--cpu=30:31" in limits and "--core=0" in limits


def test_files_of_etc_that_link_elsewhere_are_mounted_where_they_lead(tmp_path: Path) -> None:
    run = tmp_path / "run" / "systemd" / "resolve"
    run.mkdir(parents=True)
    (run / "stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    assert link_targets(etc, ("resolv.conf", "hosts", "localtime")) == [str(run / "stub-resolv.conf")]
