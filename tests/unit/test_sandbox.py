"""The sandbox: process-group kills, capped output, scrubbed environment, workspace names."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from anvil.domain.workspaces import WorkspaceError, resolve_workspace
from workers.sandbox import ProcessResult, run_process, scrubbed_env

PY = sys.executable


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed, unreaped child counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def read_ints(path: Path, count: int = 1) -> list[int]:
    """The integers the test process wrote to ``path`` (waits for the write to complete)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        words = path.read_text().split() if path.exists() else []
        if len(words) == count:
            return [int(w) for w in words]
        time.sleep(0.02)
    raise AssertionError(f"the test process never wrote {path}")


def run(argv: list[str], tmp_path: Path, **kw: Any) -> ProcessResult:
    options: dict[str, Any] = {"cwd": tmp_path, "env": scrubbed_env(), "timeout_s": 10, "output_cap": 4096}
    return run_process(argv, **{**options, **kw})


def test_exit_code_and_output_of_a_plain_run(tmp_path: Path) -> None:
    result = run(["sh", "-c", "echo out; echo err >&2; exit 7"], tmp_path)
    assert result.exit_code == 7
    assert result.output.splitlines() == ["out", "err"]
    assert not (result.timed_out or result.truncated or result.stopped)


def test_runs_in_the_given_directory_without_a_shell(tmp_path: Path) -> None:
    result = run(["pwd"], tmp_path)
    assert result.output.strip() == str(tmp_path)
    # argv is passed as is: no shell expands it.
    assert run(["echo", "$HOME", "*"], tmp_path).output.strip() == "$HOME *"


def test_a_missing_program_is_reported_not_raised(tmp_path: Path) -> None:
    result = run(["no-such-program-anvil"], tmp_path)
    assert result.exit_code is None
    assert "no-such-program-anvil" in result.output


def test_timeout_kills_the_group_including_a_background_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    result = run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], tmp_path, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.exit_code is None
    assert gone_within(*read_ints(pidfile), 5)


def test_timeout_also_kills_a_child_that_left_the_process_group(tmp_path: Path) -> None:
    # The child moves to a process group of its own; it is still in the test's session, so it dies too.
    info = tmp_path / "child.txt"
    child = (
        "import os, time; os.setpgid(0, 0); "
        f"open({str(info)!r}, 'w').write(f'{{os.getpid()}} {{os.getpgrp()}}'); time.sleep(60)"
    )
    result = run(["sh", "-c", f'"{PY}" -c "{child}" & wait'], tmp_path, timeout_s=1.0)
    assert result.timed_out
    pid, pgid = read_ints(info, 2)
    assert pgid == pid, "the child did not leave the test's process group"
    assert gone_within(pid, 5)


def test_a_background_child_does_not_outlive_a_clean_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    # The leader exits 0 at once; the orphan still holds the output pipe and must not keep us waiting.
    result = run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}"], tmp_path)
    assert time.monotonic() - started < 5
    assert result.exit_code == 0 and not result.timed_out
    assert gone_within(*read_ints(pidfile), 5)


def test_stop_event_ends_the_run(tmp_path: Path) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        result = run(["sleep", "30"], tmp_path, stop=stop)
    finally:
        timer.cancel()
    assert result.stopped and not result.timed_out
    assert result.exit_code is None
    assert result.duration_s < 5


def test_output_cap_keeps_head_and_tail_and_marks_truncation(tmp_path: Path) -> None:
    cap, filler = 2048, 100_000
    script = f"import sys; sys.stdout.write('HEAD' + 'x' * {filler} + 'TAIL')"
    result = run([PY, "-c", script], tmp_path, output_cap=cap)
    assert result.truncated
    assert result.output.startswith("HEAD")
    assert result.output.endswith("TAIL")
    dropped = 4 + filler + 4 - cap
    assert f"[{dropped} bytes of output truncated]" in result.output
    assert len(result.output) < cap + 100


def test_an_endless_flood_of_output_still_times_out_with_its_output_capped(tmp_path: Path) -> None:
    result = run(["yes", "flood"], tmp_path, timeout_s=1, output_cap=4096)
    assert result.timed_out and result.exit_code is None
    assert result.truncated and len(result.output) < 4096 + 100
    assert result.output.startswith("flood\nflood\n")
    assert result.duration_s < 5


def test_progress_ticks_keep_coming_while_the_test_writes_output(tmp_path: Path) -> None:
    """on_tick (live progress) runs on time whether the test is quiet or busy writing."""
    ticks: list[float] = []
    script = "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.01)"
    result = run([PY, "-c", script], tmp_path, on_tick=lambda: ticks.append(time.monotonic()), tick_s=0.1)
    assert result.exit_code == 0
    assert result.output.split() == [str(i) for i in range(60)]
    assert len(ticks) >= 4  # about 0.6 s of running at one tick per 0.1 s, plus the final one


def test_output_under_the_cap_is_kept_whole(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('y' * 2000)"
    result = run([PY, "-c", script], tmp_path, output_cap=2048)
    assert not result.truncated
    assert result.output == "y" * 2000


def test_nul_bytes_are_removed(tmp_path: Path) -> None:
    result = run(["printf", "a\\000b\\000c"], tmp_path)
    assert result.output == "abc"


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    result = run(["printf", "ok\\377"], tmp_path)
    assert result.output == "ok\ufffd"


SECRETS = {
    "ANVIL_DATABASE_URL": "postgresql+psycopg://anvil:hunter2@db/anvil",
    "ANVIL_SECRET_KEY": "super-secret-signing-key-000000000000",
    "ANVIL_REDIS_URL": "redis://:hunter2@redis:6379/0",
    "REDIS_URL": "redis://:hunter2@redis:6379/0",
    "DATABASE_URL": "postgresql://anvil:hunter2@db/anvil",
    "CELERY_BROKER_URL": "redis://:hunter2@redis:6379/0",
    "PGPASSWORD": "hunter2",
    "AWS_SECRET_ACCESS_KEY": "hunter2",
}


def test_environment_is_scrubbed_of_anvil_and_broker_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    result = run(["env"], tmp_path, env=scrubbed_env({"STEP_VAR": "given"}))
    seen = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    assert not set(SECRETS) & set(seen), "credentials reached the test process"
    assert "hunter2" not in result.output
    assert seen["STEP_VAR"] == "given"
    assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_passthrough_names_only_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_BUILD_NUMBER", "42")
    monkeypatch.setenv("OTHER_THING", "x")
    env = scrubbed_env(passthrough=("CI_BUILD_NUMBER",))
    assert env["CI_BUILD_NUMBER"] == "42"
    assert "OTHER_THING" not in env


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "demo").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_resolve_workspace_finds_a_plain_name(root: Path) -> None:
    assert resolve_workspace(root, "demo") == (root / "demo").resolve()


@pytest.mark.parametrize(
    "name", ["../outside", "..", ".", "/etc", "/tmp/demo", "demo/sub", "demo/../demo", "a\\b", ""]
)
def test_resolve_workspace_refuses_names_that_could_escape(root: Path, name: str) -> None:
    with pytest.raises(WorkspaceError, match="not a plain directory name"):
        resolve_workspace(root, name)


def test_resolve_workspace_refuses_a_missing_directory(root: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        resolve_workspace(root, "nope")


def test_resolve_workspace_refuses_a_symlink_out_of_the_root(root: Path) -> None:
    (root / "sneaky").symlink_to(root.parent / "outside")
    with pytest.raises(WorkspaceError, match="leaves the workspace root"):
        resolve_workspace(root, "sneaky")


def test_resolve_workspace_refuses_a_file(root: Path) -> None:
    (root / "file.txt").write_text("not a dir")
    with pytest.raises(WorkspaceError, match="does not exist"):
        resolve_workspace(root, "file.txt")
