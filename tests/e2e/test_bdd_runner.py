"""BDD through real `anvil api`, `anvil worker` and `anvil beat`: the same results as behave itself."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from tests.behave_oracle import run_behave
from tests.e2e.conftest import Stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspaces" / "bdd-demo"
WAIT_STEPS = """
import time
from pathlib import Path

from behave import given


@given('the file "{name}" appears')
def file_appears(context, name):
    deadline = time.monotonic() + 60
    while not (Path("signals") / name).exists():
        assert time.monotonic() < deadline, f"{name} did not appear"
        time.sleep(0.02)
"""


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment contains ``marker`` (test processes get ANVIL_EXECUTION_ID)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def add_workspace(stack: Stack) -> Path:
    """The behave example as workspace ``bdd-demo`` of the stack (plus a step that waits for a file)."""
    workspace = stack.root / "workspaces" / "bdd-demo"
    shutil.copytree(EXAMPLE, workspace)
    (workspace / "features" / "steps" / "wait_steps.py").write_text(WAIT_STEPS)
    # The host signals a waiting step here: inside the sandbox the workspace's top level is a
    # private layer taken when the test starts, its subdirectories the live (read-only) originals.
    (workspace / "signals").mkdir()
    return workspace


def create_bdd_case(stack: Stack, spec: dict[str, Any], *, timeout_s: int = 120) -> dict[str, Any]:
    body = {"name": f"bdd-{uuid.uuid4().hex[:8]}", "kind": "bdd", "spec": spec, "timeout_s": timeout_s}
    response = stack.client.post("/api/v1/test-cases", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def outcomes(execution: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (s["details"]["scenario"], s["keyword"], s["name"], s["details"]["behave_status"])
        for s in execution["steps"]
    ]


def step_counts(execution: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in execution["summary"].items() if k not in ("total", "scenarios")}


def scenario_statuses(execution: dict[str, Any]) -> dict[str, str]:
    """Each scenario's outcome from its recorded steps, by behave's rule (undefined makes it error)."""
    by_scenario: dict[str, list[str]] = {}
    for step in execution["steps"]:
        by_scenario.setdefault(step["details"]["scenario"], []).append(step["details"]["behave_status"])
    result = {}
    for scenario, statuses in by_scenario.items():
        if "failed" in statuses:
            result[scenario] = "failed"
        elif {"undefined", "error", "pending"} & set(statuses):
            result[scenario] = "error"
        elif set(statuses) == {"skipped"}:
            result[scenario] = "skipped"
        else:
            result[scenario] = "passed"
    return result


def test_behave_example_gives_the_same_outcomes_as_behave_run_directly(stack: Stack) -> None:
    workspace = add_workspace(stack)
    feature = "features/login.feature"
    full = create_bdd_case(stack, {"workspace": "bdd-demo", "feature": feature})
    smoke = create_bdd_case(
        stack, {"workspace": "bdd-demo", "feature": feature, "tags": "@smoke and not @slow"}
    )
    outline = create_bdd_case(
        stack, {"workspace": "bdd-demo", "feature": feature, "scenario": "Wrong credentials are refused"}
    )
    ids = [stack.submit(case["id"])["id"] for case in (full, smoke, outline)]
    full_run, smoke_run, outline_run = (stack.wait_final(i) for i in ids)

    # Everything: one step per Gherkin step, with behave's statuses, in behave's order.
    behave = run_behave(workspace, feature)
    assert full_run["status"] == "FAILED", full_run
    assert outcomes(full_run) == behave.steps
    assert (
        step_counts(full_run)
        == behave.counts["steps"]
        == {"passed": 31, "failed": 1, "skipped": 2, "undefined": 1}
    )
    assert full_run["summary"]["scenarios"] == {"total": 8, **behave.counts["scenarios"]}
    assert full_run["summary"]["total"] == len(behave.steps)
    recorded = scenario_statuses(full_run)
    assert list(recorded) == list(behave.scenario_status)
    for scenario, status in behave.scenario_status.items():
        assert status in (None, recorded[scenario])  # behave's JSON omits one status next to the Rule
    assert sorted(recorded.values()) == sorted(
        status for status, n in behave.counts["scenarios"].items() for _ in range(n)
    )
    assert 'Then the dashboard greets "bob"' in full_run["error"]
    assert 'undefined step: When "alice" asks for a password reset by SMS' in full_run["error"]
    steps = full_run["steps"]
    assert {s["keyword"] for s in steps} == {"Given", "When", "Then", "And", "But"}
    assert steps[0]["details"]["background"] is True
    assert steps[0]["details"]["table"][1] == ["alice", "s3cret", "no"]
    assert any(s["details"].get("doc_string") == "Hello alice,\nwelcome back to Anvil." for s in steps)
    assert {s["details"].get("rule") for s in steps} == {None, "Locked accounts cannot sign in"}
    undefined = next(s for s in steps if s["status"] == "undefined")
    assert "asks for a password reset by SMS" in undefined["error"]
    assert stack.client.get(f"/api/v1/executions/{ids[0]}/steps").json() == steps

    # A tag expression: the same selection as behave's --tags.
    behave_smoke = run_behave(workspace, feature, "--tags", "@smoke and not @slow")
    assert smoke_run["status"] == "PASSED", smoke_run
    assert outcomes(smoke_run) == behave_smoke.steps
    assert step_counts(smoke_run) == behave_smoke.counts["steps"]
    assert smoke_run["summary"]["scenarios"] == {"total": 8, **behave_smoke.counts["scenarios"]}

    # A scenario name: the outline's two example rows, nothing else (as behave's --name shows it).
    behave_outline = run_behave(workspace, feature, "--name", "^Wrong credentials are refused -- @")
    assert outline_run["status"] == "PASSED", outline_run
    assert outcomes(outline_run) == behave_outline.steps
    assert [s["details"]["example"]["values"]["username"] for s in outline_run["steps"][::4]] == [
        "alice",
        "mallory",
    ]


def test_feature_text_steps_are_visible_while_behave_runs_and_timeouts_stop_it(stack: Stack) -> None:
    workspace = add_workspace(stack)
    stuck_text = 'Feature: Stuck\n  Scenario: waits forever\n    Given the file "never" appears\n'
    stuck = create_bdd_case(stack, {"workspace": "bdd-demo", "feature_text": stuck_text}, timeout_s=3)
    stuck_id = stack.submit(stuck["id"])["id"]
    text = (
        "Feature: Live\n"
        "  Scenario: quick\n    Given an empty cart\n    Then the cart total is 0.00\n\n"
        '  Scenario: waits\n    Given the file "release" appears\n    Then the cart total is 0.00\n'
    )
    case = create_bdd_case(stack, {"workspace": "bdd-demo", "feature_text": text})
    execution_id = stack.submit(case["id"])["id"]

    # The quick scenario's steps show up while the second scenario still waits.
    deadline = time.monotonic() + 60
    while True:
        steps = stack.client.get(f"/api/v1/executions/{execution_id}/steps").json()
        if len(steps) >= 2:
            break
        assert time.monotonic() < deadline, "no live steps"
        time.sleep(0.05)
    assert stack.get(execution_id)["status"] == "RUNNING"
    assert [(s["keyword"], s["name"], s["status"]) for s in steps] == [
        ("Given", "an empty cart", "passed"),
        ("Then", "the cart total is 0.00", "passed"),
    ]
    assert steps[0]["details"]["location"] == "feature_text:3"
    (workspace / "signals" / "release").touch()

    execution = stack.wait_final(execution_id)
    assert execution["status"] == "PASSED", execution
    assert execution["summary"] == {"total": 4, "passed": 4, "scenarios": {"total": 2, "passed": 2}}
    # The whole-test timeout killed behave (and everything it started).
    stuck_run = stack.wait_final(stuck_id)
    assert stuck_run["status"] == "TIMEOUT", stuck_run
    assert "test timeout after 3s" in stuck_run["error"]
    assert marked_processes(stuck_id) == []
    # Nothing of the runs was left in the workspace.
    assert sorted(p.name for p in (workspace / "features").iterdir()) == sorted(
        p.name for p in (EXAMPLE / "features").iterdir()
    )


def test_bad_bdd_specs_are_refused_and_nothing_is_written(make_stack: Any) -> None:
    stack = make_stack(workers=0, beat=False)
    add_workspace(stack)
    case = create_bdd_case(stack, {"workspace": "bdd-demo", "feature": "features/cart.feature"})
    bad = [
        (
            {"feature_text": "Feature: x\n  Scenario: a\n    Given b\n  oops\n"},
            "body.spec.feature_text",
            "line 4, column 3",
        ),
        ({"feature": "features/nope.feature"}, "body.spec.feature", "does not exist"),
        ({"feature": "../bdd-demo/features/login.feature"}, "body.spec.feature", "inside the workspace"),
        ({"feature": "/etc/x.feature"}, "body.spec.feature", "inside the workspace"),
        ({"feature": "features/cart.feature", "colour": "red"}, "body.spec.colour", "Extra inputs"),
        ({"feature": "features/cart.feature", "tags": "@a and"}, "body.spec.tags", "tag expression"),
        ({"feature": "features/cart.feature", "scenario": "nope"}, "body.spec.scenario", "no scenario named"),
    ]
    for spec, field, why in bad:
        full_spec = {"workspace": "bdd-demo", **spec}
        created = stack.client.post(
            "/api/v1/test-cases",
            json={"name": f"bad-{uuid.uuid4().hex[:6]}", "kind": "bdd", "spec": full_spec},
        )
        updated = stack.client.patch(f"/api/v1/test-cases/{case['id']}", json={"spec": full_spec})
        for response in (created, updated):
            assert response.status_code == 422, (spec, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            assert problem["field"] == field, problem
            assert why in problem["detail"], problem

    unknown_workspace = stack.client.post(
        "/api/v1/test-cases",
        json={
            "name": "bad-ws",
            "kind": "bdd",
            "spec": {"workspace": "elsewhere", "feature": "features/x.feature"},
        },
    )
    assert unknown_workspace.status_code == 422
    assert unknown_workspace.json()["field"] == "body.spec.workspace"
    # Nothing was written: one case, still at its first version with its first spec.
    assert stack.sql("SELECT count(*) FROM test_cases")[0][0] == 1
    stored = stack.client.get(f"/api/v1/test-cases/{case['id']}").json()
    assert (stored["version"], stored["spec"]) == (1, case["spec"])
