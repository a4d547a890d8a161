"""The execution graph over HTTP: ancestors, descendants, siblings, depth limits, correlation chains."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority, Role, TriggerKind
from db import lineage
from db.models import Execution, TestCase
from db.session import get_engine
from tests.helpers import create_execution, make_case
from tests.integration.support import problem

EXECUTIONS = "/api/v1/executions"
Headers = dict[str, str]


@pytest.fixture
def viewer(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.VIEWER)


def spawn(session: Session, case: TestCase, parent: Execution | None = None, **kw: Any) -> Execution:
    """A QUEUED execution; with a parent it joins the parent's chain and tree."""
    links: dict[str, Any] = {}
    if parent is not None:
        links = {
            "parent_execution_id": parent.id,
            "correlation_id": parent.correlation_id,
            "root_execution_id": parent.root_execution_id,
        }
    with session.begin():
        return create_execution(
            session,
            case=case,
            priority=Priority.NORMAL,
            trigger_kind=kw.pop("trigger_kind", TriggerKind.RETRY if parent else TriggerKind.API),
            requested_by=None,
            actor="test",
            **links,
            **kw,
        )


@pytest.fixture
def graph(session: Session) -> dict[str, Execution]:
    """root -> a, b;  a -> a1, a2;  b -> b1;  a1 -> a1x.  Created depth-first, so that creation
    order (root, a, a1, a1x, a2, b, b1) differs from breadth-first order."""
    case = make_case(session)
    g: dict[str, Execution] = {}
    g["root"] = spawn(session, case)
    g["a"] = spawn(session, case, g["root"])
    g["a1"] = spawn(session, case, g["a"])
    g["a1x"] = spawn(session, case, g["a1"])
    g["a2"] = spawn(session, case, g["a"])
    g["b"] = spawn(session, case, g["root"])
    g["b1"] = spawn(session, case, g["b"])
    return g


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def named(g: dict[str, Execution], *names: str) -> list[str]:
    return [str(g[n].id) for n in names]


def test_lineage_of_a_middle_node(client: TestClient, graph: dict[str, Execution], viewer: Headers) -> None:
    r = client.get(f"{EXECUTIONS}/{graph['a1'].id}/lineage", headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution"]["id"] == str(graph["a1"].id) and body["depth"] == 20
    assert ids(body["ancestors"]) == named(graph, "root", "a"), "from the root down to the parent"
    assert [(d["id"], d["level"]) for d in body["descendants"]] == [(str(graph["a1x"].id), 1)]
    assert ids(body["siblings"]) == named(graph, "a2")
    assert body["execution"]["correlation_id"] == str(graph["root"].id)
    assert body["execution"]["root_execution_id"] == str(graph["root"].id)


def test_descendants_are_breadth_first_with_their_level(
    client: TestClient, graph: dict[str, Execution], viewer: Headers
) -> None:
    body = client.get(f"{EXECUTIONS}/{graph['root'].id}/lineage", headers=viewer).json()
    assert body["ancestors"] == [] and body["siblings"] == []
    levels = [(d["id"], d["level"]) for d in body["descendants"]]
    expected = [("a", 1), ("b", 1), ("a1", 2), ("a2", 2), ("b1", 2), ("a1x", 3)]
    assert levels == [(str(graph[n].id), level) for n, level in expected]
    # Each descendant is a full execution view.
    assert body["descendants"][0]["parent_execution_id"] == str(graph["root"].id)
    assert body["descendants"][0]["status"] == "QUEUED"


def test_depth_limits_both_directions(
    client: TestClient, graph: dict[str, Execution], viewer: Headers
) -> None:
    one = client.get(f"{EXECUTIONS}/{graph['root'].id}/lineage", params={"depth": 1}, headers=viewer).json()
    assert one["depth"] == 1
    assert ids(one["descendants"]) == named(graph, "a", "b"), "depth=1: only the direct children"
    up = client.get(f"{EXECUTIONS}/{graph['a1x'].id}/lineage", params={"depth": 2}, headers=viewer).json()
    assert ids(up["ancestors"]) == named(graph, "a", "a1"), "the two nearest ancestors, the higher first"


@pytest.mark.parametrize("depth", ["0", "-3", "deep"])
def test_a_bad_depth_is_refused(
    client: TestClient, graph: dict[str, Execution], viewer: Headers, depth: str
) -> None:
    url = f"{EXECUTIONS}/{graph['root'].id}/lineage"
    problem(client.get(url, params={"depth": depth}, headers=viewer), 422, "query.depth")


def test_depth_is_capped_at_a_hundred(client: TestClient, session: Session, viewer: Headers) -> None:
    case = make_case(session)
    chain = [spawn(session, case)]
    for _ in range(105):
        chain.append(spawn(session, case, chain[-1]))

    down = client.get(f"{EXECUTIONS}/{chain[0].id}/lineage", params={"depth": 1000}, headers=viewer)
    assert down.status_code == 200, down.text
    assert down.json()["depth"] == 100
    levels = [d["level"] for d in down.json()["descendants"]]
    assert levels == list(range(1, 101))
    assert ids(down.json()["descendants"]) == [str(e.id) for e in chain[1:101]]

    up = client.get(f"{EXECUTIONS}/{chain[-1].id}/lineage", params={"depth": 1000}, headers=viewer).json()
    assert ids(up["ancestors"]) == [str(e.id) for e in chain[5:105]], "the hundred nearest, the highest first"
    default = client.get(f"{EXECUTIONS}/{chain[-1].id}/lineage", headers=viewer).json()
    assert ids(default["ancestors"]) == [str(e.id) for e in chain[85:105]]


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)


def test_each_direction_is_one_recursive_query(session: Session, graph: dict[str, Execution]) -> None:
    leaf, root = graph["a1x"], graph["root"]
    with statements() as seen:
        assert [e.id for e in lineage.ancestors(session, leaf, depth=20)] == [
            root.id,
            graph["a"].id,
            graph["a1"].id,
        ]
    assert len(seen) == 1 and "WITH RECURSIVE" in seen[0]
    with statements() as seen:
        assert len(lineage.descendants(session, root, depth=20)) == 6
    assert len(seen) == 1 and "WITH RECURSIVE" in seen[0]
    session.rollback()


def test_a_suite_members_lineage(
    client: TestClient, session: Session, viewer: Headers, auth: Callable[..., Headers]
) -> None:
    cases = [make_case(session) for _ in range(3)]
    maintainer = auth(Role.MAINTAINER)
    suite = client.post(
        "/api/v1/test-suites", json={"name": "s", "case_ids": [str(c.id) for c in cases]}, headers=maintainer
    ).json()
    run = client.post(f"{EXECUTIONS}/suite", json={"test_suite_id": suite["id"]}, headers=maintainer).json()
    of_suite = client.get(f"{EXECUTIONS}/{run['id']}/lineage", headers=viewer).json()
    children = of_suite["descendants"]
    # The members are created in one statement with one timestamp: their order among themselves is by id.
    assert sorted(c["test_case_id"] for c in children) == sorted(str(c.id) for c in cases)
    assert {c["level"] for c in children} == {1}

    member = client.get(f"{EXECUTIONS}/{children[1]['id']}/lineage", headers=viewer).json()
    assert ids(member["ancestors"]) == [run["id"]]
    assert sorted(ids(member["siblings"])) == sorted([children[0]["id"], children[2]["id"]])
    assert member["descendants"] == []


def test_the_correlation_chain_lists_every_execution_by_creation(
    client: TestClient, graph: dict[str, Execution], session: Session, viewer: Headers
) -> None:
    unrelated = spawn(session, make_case(session))
    r = client.get(f"{EXECUTIONS}/correlation/{graph['root'].id}", headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["correlation_id"] == str(graph["root"].id)
    assert body["root_execution_id"] == str(graph["root"].id)
    assert body["total_executions"] == 7
    assert ids(body["executions"]) == named(graph, "root", "a", "a1", "a1x", "a2", "b", "b1")
    assert str(unrelated.id) not in ids(body["executions"])

    alone = client.get(f"{EXECUTIONS}/correlation/{unrelated.id}", headers=viewer).json()
    assert alone["total_executions"] == 1 and alone["root_execution_id"] == str(unrelated.id)


def test_a_repair_submitted_over_http_joins_the_chain(
    client: TestClient, graph: dict[str, Execution], session: Session, auth: Callable[..., Headers]
) -> None:
    tester = auth(Role.TESTER)
    body = {
        "test_case_id": str(graph["a1"].test_case_id),
        "trigger_kind": "repair",
        "parent_execution_id": str(graph["a1"].id),
    }
    repair = client.post(f"{EXECUTIONS}/case", json=body, headers=tester).json()
    chain = client.get(f"{EXECUTIONS}/correlation/{graph['root'].id}", headers=tester).json()
    assert chain["total_executions"] == 8 and ids(chain["executions"])[-1] == repair["id"]
    lineage_of_a1 = client.get(f"{EXECUTIONS}/{graph['a1'].id}/lineage", headers=tester).json()
    assert [(d["id"], d["level"], d["trigger_kind"]) for d in lineage_of_a1["descendants"]] == [
        (str(graph["a1x"].id), 1, "retry"),
        (repair["id"], 1, "repair"),
    ]


def test_unknown_ids_are_not_found(client: TestClient, viewer: Headers) -> None:
    problem(client.get(f"{EXECUTIONS}/{uuid.uuid4()}/lineage", headers=viewer), 404)
    problem(client.get(f"{EXECUTIONS}/correlation/{uuid.uuid4()}", headers=viewer), 404, "correlation_id")
    problem(client.get(f"{EXECUTIONS}/correlation/not-a-uuid", headers=viewer), 422, "path.correlation_id")


def test_the_graph_needs_a_token(client: TestClient, graph: dict[str, Execution]) -> None:
    problem(client.get(f"{EXECUTIONS}/{graph['root'].id}/lineage"), 401)
    problem(client.get(f"{EXECUTIONS}/correlation/{graph['root'].id}"), 401)
