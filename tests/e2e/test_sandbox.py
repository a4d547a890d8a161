"""A test is untrusted code: through real `anvil` processes, what it tries against the worker fails.

Each step below is what a hostile conftest or behave step would do: read the worker's environment
and command line through /proc, look for other processes, write into Anvil's installation and into
the workspace, reach the database, exhaust memory, or hang the worker with a regular expression.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import anvil
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap); .ci/run installs it"
)

SNOOP = r"""
echo "uid=$(id -u) gid=$(id -g)"
echo "pids=$(ls -d /proc/[0-9]* | wc -l)"
for p in /proc/[0-9]*; do
  printf '%s: ' "$p"; tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo
  tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -i -E 'ANVIL[_]|postgres[q:]|redis[:]' || true
done
echo "ppid-cmdline: $(tr '\0' ' ' < /proc/$PPID/cmdline 2>&1)"
echo "ppid-environ: $(tr '\0' '\n' < /proc/$PPID/environ 2>&1 | grep 'ANVIL[_]')"
"""


MULTIPROCESSING = """
import multiprocessing
lock = multiprocessing.Lock()
with multiprocessing.Pool(2) as pool:
    print(pool.map(abs, [-1, -2]))
"""


def test_a_test_sees_no_secret_no_other_process_and_cannot_write_outside_its_scratch(stack: Stack) -> None:
    workspace = stack.root / "workspaces" / "demo"
    (workspace / "data.txt").write_text("original\n")
    install = Path(anvil.__file__).resolve().parent
    venv = Path(sys.prefix)
    secret_key = stack.env.get("ANVIL_SECRET_KEY") or os.environ["ANVIL_SECRET_KEY"]

    execution = stack.run_case(
        [
            {"name": "snoop", "run": ["sh", "-c", SNOOP]},
            {
                "name": "write install",
                "run": ["sh", "-c", f"touch {install}/pwned {venv}/pwned 2>&1; ls {install} 2>&1; true"],
            },
            {"name": "write existing", "run": ["sh", "-c", "echo hacked > data.txt"], "expect_exit": 2},
            {"name": "write new", "run": ["sh", "-c", "echo out > junit.xml && cat junit.xml data.txt"]},
            {"name": "scratch", "run": ["sh", "-c", 'echo kept > "$HOME/k" && cat "$TMPDIR/k"']},
            # What test suites commonly need still works: semaphores in /dev/shm, worker processes.
            {"name": "processes", "run": ["python3", "-c", MULTIPROCESSING], "expect_output": r"\[1, 2\]"},
        ]
    )

    assert execution["status"] == "PASSED", execution
    steps = {s["name"]: s for s in execution["steps"]}
    snoop = steps["snoop"]["output"]
    # Another uid than the worker's (root here), in its own PID namespace: a handful of processes.
    uid_line = snoop.splitlines()[0]
    assert f"uid={os.getuid()} " not in uid_line + " ", snoop
    assert int(snoop.split("pids=")[1].split()[0]) <= 8, snoop
    for leaked in (secret_key, stack.database_url, stack.redis_url, "celery", "anvil worker"):
        assert leaked not in snoop, f"{leaked!r} visible to the test:\n{snoop}"
    # Only the test's own variables: none of the worker's ANVIL_* settings.
    assert "ANVIL_" not in snoop.replace("ANVIL_EXECUTION_ID=", "").replace("ANVIL_ATTEMPT=", ""), snoop
    # Anvil's installation is not even visible, the worker's Python read-only.
    assert not (install / "pwned").exists() and not (venv / "pwned").exists()
    written = steps["write install"]["output"]
    assert f"cannot touch '{venv}/pwned': Read-only file system" in written, written
    assert f"cannot access '{install}'" in written, written  # not there at all
    # The workspace: existing files are read-only; new files land in a private layer, not on disk.
    assert "Read-only file system" in steps["write existing"]["output"]
    assert (workspace / "data.txt").read_text() == "original\n"
    assert steps["write new"]["output"].split() == ["out", "original"]
    assert not (workspace / "junit.xml").exists()
    assert steps["scratch"]["output"].strip() == "kept"


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs the psql client")
def test_without_network_the_test_cannot_reach_the_database_even_knowing_its_url(stack: Stack) -> None:
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    probe = ["psql", url, "-Atc", "select count(*) from users"]
    # With the network (the default) this machine's trust authentication would let it in; that is
    # the deployment's business (passwords), so the control is: the same command without network.
    execution = stack.run_case([{"run": probe, "expect_exit": 2}], spec_options={"network": False})
    assert execution["status"] == "PASSED", execution
    output = execution["steps"][0]["output"]
    assert "could not connect" in output or "Connection refused" in output or "Network is unreachable" in (
        output
    ), output


def test_limits_and_a_runaway_regex_end_the_test_in_time(stack: Stack) -> None:
    memory = stack.create_case(
        [{"name": "allocate 2 GiB", "run": ["python3", "-c", "bytearray(2 * 1024**3)"]}],
        spec_options={"limits": {"memory_mb": 256}},
    )
    regex = stack.create_case(
        [{"run": ["printf", "a" * 40 + "!"], "expect_output": "(a|a)+$"}],
        timeout_s=10,
    )
    files = stack.create_case(
        [{"run": ["sh", "-c", "head -c 5000000 /dev/zero > $TMPDIR/big"]}],
        spec_options={"limits": {"file_size_mb": 1}},
    )
    ids = [stack.submit(case["id"])["id"] for case in (memory, regex, files)]
    started = time.monotonic()
    memory_run, regex_run, files_run = (stack.wait_final(i) for i in ids)

    assert memory_run["status"] == "ERROR", memory_run
    assert "memory limit reached (256 MiB)" in memory_run["steps"][0]["error"]
    assert "memory limit reached" in memory_run["error"]
    # The pattern backtracks for ever on this output; the step fails within the test's time.
    assert regex_run["status"] == "FAILED", regex_run
    assert "expect_output took too long" in regex_run["steps"][0]["error"]
    assert files_run["status"] == "ERROR", files_run
    assert "file size limit reached (1 MiB)" in files_run["steps"][0]["error"]
    assert time.monotonic() - started < 30


def _worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    anvil_bin = str(Path(sys.executable).with_name("anvil"))
    return subprocess.Popen(
        [anvil_bin, "worker", "-c", "1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_worker_refuses_to_run_tests_unsandboxed_unless_told(tmp_path: Path) -> None:
    # PATH without bubblewrap: the worker says what to install and exits 2.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": str(bin_dir), "ANVIL_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = _worker(env, tmp_path)
    output, _ = done.communicate(timeout=60)
    assert done.returncode == 2, output
    assert "bubblewrap" in output and "ANVIL_SANDBOX=off" in output

    # Told explicitly: it starts, warning loudly.
    started = _worker({**env, "ANVIL_SANDBOX": "off"}, tmp_path)
    try:
        assert started.stdout is not None
        seen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "WARNING: ANVIL_SANDBOX=off" not in seen:
            line = started.stdout.readline()
            if not line:
                break
            seen += line
        assert "WARNING: ANVIL_SANDBOX=off" in seen and "unconfined" in seen, seen
    finally:
        started.kill()
        started.wait()
