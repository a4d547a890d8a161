"""`anvil import junit` as a CI job runs it: a real pytest report, in a git checkout, against a real API."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from anvil.cli.processes import anvil_argv
from tests.e2e.conftest import StackFactory
from tests.e2e.test_cli import anvil, token_of
from tests.unit.test_junit_import import run_pytest

PROJECT = {
    "tests/__init__.py": "",
    "tests/test_shop.py": "def test_cart():\n    assert True\n\ndef test_pay():\n    assert 1 == 2\n",
}


def anvil_in(cwd: Path, *args: str, api_url: str, token: str) -> subprocess.CompletedProcess[str]:
    """`anvil args` run in ``cwd`` (a git checkout), as test_cli.anvil runs it elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("ANVIL_API_URL", "ANVIL_TOKEN")}
    env |= {"ANVIL_API_URL": api_url, "ANVIL_TOKEN": token}
    argv = anvil_argv(*args)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=90)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def test_import_junit_fills_revision_and_branch_from_git_and_records_the_results(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(workers=0, beat=False)
    at = {"api_url": stack.api_url, "token": token_of(stack)}
    name = f"shop-{uuid.uuid4().hex[:6]}"
    created = stack.client.post(
        "/api/v1/test-cases",
        json={"name": name, "kind": "pytest", "timeout_s": 60, "spec": {"workspace": "demo", "args": []}},
    )
    assert created.status_code == 201, created.text
    repo = tmp_path / "shop"
    report = run_pytest(repo, files=PROJECT)
    (repo / "report.xml").write_bytes(report)
    git(repo, "init", "-q", "-b", "feature/pay")
    git(
        repo,
        "-c",
        "user.name=ci",
        "-c",
        "user.email=ci@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    head = git(repo, "rev-parse", "HEAD")

    imported = anvil_in(repo, "import", "junit", "report.xml", "--case", name, "--env", "ci", **at)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    execution_id = imported.stdout.split()[1]
    assert f"revision={head} branch=feature/pay" in imported.stdout
    assert "FAILED" in imported.stdout
    execution = stack.get(execution_id, include="steps")
    assert (execution["revision"], execution["branch"], execution["environment"]) == (
        head,
        "feature/pay",
        "ci",
    )
    assert {s["name"]: s["status"] for s in execution["steps"]} == {
        "tests/test_shop.py::test_cart": "passed",
        "tests/test_shop.py::test_pay": "failed",
    }
    rows = stack.sql(
        "SELECT t.key, r.status, r.revision FROM test_results r JOIN tests t ON t.id = r.test_id "
        "WHERE r.execution_id = :id ORDER BY t.key",
        id=execution_id,
    )
    assert [tuple(row) for row in rows] == [
        ("tests/test_shop.py::test_cart", "passed", head),
        ("tests/test_shop.py::test_pay", "failed", head),
    ]

    broken = repo / "broken.xml"
    broken.write_text("<testsuite>\n<testcase name='x'>\n")
    refused = anvil("import", "junit", str(broken), "--case", name, **at)
    assert refused.returncode == 2
    assert "not well-formed XML" in refused.stderr and "line 3" in refused.stderr
