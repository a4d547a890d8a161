"""The sandbox's resource limits reach the test process (set once in the worker, inherited)."""

from __future__ import annotations

from pathlib import Path

from workers.sandbox import run_process, scrubbed_env


def test_test_process_cannot_dump_core_and_has_bounded_open_files(tmp_path: Path) -> None:
    result = run_process(
        ["sh", "-c", "ulimit -Sc; ulimit -Hc; ulimit -Sn"],
        cwd=tmp_path,
        env=scrubbed_env(),
        timeout_s=10,
        output_cap=4096,
    )
    soft_core, hard_core, open_files = result.output.split()
    assert (soft_core, hard_core) == ("0", "0")
    assert int(open_files) <= 4096
