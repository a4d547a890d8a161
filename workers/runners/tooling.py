"""What the pytest and behave runners share: a private directory (outside the workspace) holding
the report file and an import path for Anvil's plugin, and the environment that points there."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import workers
from workers.runners.base import RunContext
from workers.sandbox import ProcessResult, run_process, scrubbed_env

# What the test process imports of Anvil: the plugin and the formatter (standard library, pytest
# and behave only), copied so that nothing else of the installation is on its path or in its view.
PLUGIN_FILES = ("__init__.py", "pytest_plugin.py", "behave_formatter.py")


@contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory with ``path/workers`` holding copies of our plugin modules: on
    PYTHONPATH it makes them importable without putting the rest of Anvil on the test's path."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        private = Path(tmp)
        package = private / "path" / "workers"
        package.mkdir(parents=True)
        source = Path(workers.__file__).resolve().parent
        for name in PLUGIN_FILES:
            shutil.copyfile(source / name, package / name)
        yield private


def tool_env(ctx: RunContext, private: Path) -> dict[str, str]:
    """The scrubbed test environment with the spec's ``env``,
    plus the plugin's import path (before a PYTHONPATH the spec or the operator gives) and no
    bytecode written into the workspace."""
    spec_env = dict(ctx.spec.get("env") or {})
    path = [str(private / "path")]
    if spec_env.get("PYTHONPATH"):
        path.append(spec_env["PYTHONPATH"])
    if "PYTHONPATH" in ctx.passthrough_env and os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return scrubbed_env(
        {**spec_env, **ctx.base_env(), "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1"},
        ctx.passthrough_env,
    )


def run_tool(
    ctx: RunContext,
    argv: list[str],
    *,
    cwd: Path,
    private: Path,
    on_tick: Callable[[], None] | None = None,
) -> ProcessResult:
    """Run pytest or behave for ``ctx`` in the sandbox: in the workspace ``cwd``, with ``private``
    as its scratch directory and import path, under the test's timeout, until ``ctx.stop``."""
    return run_process(
        argv,
        cwd=cwd,
        env=tool_env(ctx, private),
        timeout_s=ctx.timeout_s,
        output_cap=ctx.output_cap,
        stop=ctx.stop,
        on_tick=on_tick,
        confinement=ctx.confinement(private),
    )
