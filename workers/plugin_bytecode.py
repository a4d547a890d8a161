"""pytest's rewritten bytecode of the installed pytest plugins, written once by the worker.

pytest rewrites the asserts of every module of its plugins (the packages that declare a
``pytest11`` entry point: anyio, which FastAPI brings into every Anvil install, xdist, hypothesis,
...) and caches the result beside the module's own bytecode. A sandboxed test process writes no
bytecode (it must leave nothing behind for a later run), so with no cache it rewrites and compiles
every plugin module again at each start: measured on the 2-core machine, 0.4 CPU-s per pytest
start with anyio and xdist installed, 2.8 CPU-s with hypothesis and schemathesis too.

So the worker, when it is ready, runs pytest once itself in an empty directory: no test code and
no conftest, only the installed plugins load, and pytest writes its cache as it would for any user
of that installation. Test processes then read the cache and still write nothing. Where the
installation is read-only to the worker, nothing is written and each start costs what it did; an
image can run this module at build time (``python -m workers.plugin_bytecode``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

log = logging.getLogger("anvil.worker")

TIMEOUT_S = 120.0


def marker_path(python: str = sys.executable) -> Path:
    """Where a done warm-up is noted: one per interpreter and state of its installed packages
    (installing, upgrading or removing one changes its site-packages directory)."""
    paths = sysconfig.get_paths()
    stamps = [python] + [
        f"{folder}:{os.stat(folder).st_mtime_ns}"
        for folder in dict.fromkeys((paths["purelib"], paths["platlib"]))
        if os.path.isdir(folder)
    ]
    key = hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"anvil-pytest-bytecode-{os.getuid()}-{key}"


def warm(python: str = sys.executable, *, timeout_s: float = TIMEOUT_S) -> bool:
    """Run pytest once so that its plugins' rewritten bytecode is cached; False when it was done
    already for this installation, pytest is not installed, or the run failed (logged)."""
    marker = marker_path(python)
    if marker.exists():
        return False
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="anvil-plugin-bytecode-") as empty:
        # No inifile (-c /dev/null), no conftest above the empty directory, no cache directory.
        argv = [
            python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
            "--rootdir", empty, "--confcutdir", empty, "-c", os.devnull, empty,
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": empty}
        try:
            done = subprocess.run(argv, cwd=empty, env=env, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("caching pytest's plugin bytecode failed: %s", exc)
            return False
    if done.returncode not in (0, 5):  # 5: no tests collected, as expected in an empty directory
        last = (done.stdout + done.stderr).strip().splitlines()[-3:]
        log.warning(
            "caching pytest's plugin bytecode failed (exit %s): %s", done.returncode, " | ".join(last)
        )
        return False
    marker.touch()
    log.info("cached pytest's plugin bytecode in %.1f s", time.monotonic() - began)
    return True


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    # In the background: the worker consumes meanwhile (a test that starts first pays as before).
    threading.Thread(target=warm, name="plugin-bytecode", daemon=True).start()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warm()
