"""The examples of standalone mode: register them once, and run the sample case (`anvil dev --demo`).

`anvil dev` registers, through the API, the sample case examples/hello-case.json (``hello``), every
examples/cases/*.json and every examples/suites/*.json (their cases given by name). A case or
suite whose name exists already (409) is left as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from anvil.cli.follow import follow_case
from anvil.cli.http import Api, ApiError
from anvil.cli.lookup import resolve, suite_body
from anvil.domain.states import Status
from anvil.migrate import ROOT

SAMPLE_CASE = Path("hello-case.json")


class ExampleError(Exception):
    """An example file could not be read or registered."""


@dataclass
class Registered:
    """What the examples left in the catalogue (created now or found by name)."""

    sample: tuple[str, str] | None = None  # (id, name) of the sample case
    cases: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    created: int = 0
    problems: list[str] = field(default_factory=list)


def examples_dir() -> Path | None:
    """./examples of the current directory (a checkout), else the one shipped with Anvil's sources."""
    for path in (Path("examples"), ROOT / "examples"):
        if path.is_dir():
            return path
    return None


def register_examples(api_url: str, token: str, root: Path | None = None) -> Registered:
    """Register the example cases, then the example suites; problems are collected, not raised."""
    done = Registered()
    root = root or examples_dir()
    if root is None:
        return done
    api = Api(api_url, token)
    try:
        for path in [root / SAMPLE_CASE, *sorted((root / "cases").glob("*.json"))]:
            if not path.is_file():
                continue
            try:
                ident, name = _register(api, "/api/v1/test-cases", "test case", _read(path), path, done)
            except ExampleError as exc:
                done.problems.append(str(exc))
                continue
            done.cases.append(name)
            if path.name == SAMPLE_CASE.name:
                done.sample = (ident, name)
        for path in sorted((root / "suites").glob("*.json")):
            try:
                body = suite_body(api, _read(path))
                _, name = _register(api, "/api/v1/test-suites", "test suite", body, path, done)
            except (ExampleError, ApiError) as exc:
                done.problems.append(f"{path}: {exc}")
                continue
            done.suites.append(name)
    finally:
        api.close()
    return done


def _read(path: Path) -> dict[str, Any]:
    try:
        definition = json.loads(path.read_text())
        str(definition["name"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExampleError(f"{path} is not a readable definition: {exc}") from exc
    return dict(definition)


def _register(
    api: Api, collection: str, what: str, body: dict[str, Any], path: Path, done: Registered
) -> tuple[str, str]:
    """(id, name) of the created item, or of the one of that name that exists already."""
    name = str(body["name"])
    try:
        item = api.call("POST", collection, body=body)
        done.created += 1
        return str(item["id"]), name
    except ApiError as exc:
        if exc.status != 409:
            raise ExampleError(f"cannot register {path}: {exc}") from exc
    try:
        return resolve(api, collection, what, name), name
    except ApiError as exc:
        raise ExampleError(f"cannot register {path}: {exc}") from exc


def run_demo(api_url: str, token: str, case_id: str, *, out: Console) -> bool:
    """Submit the sample case and follow it to the end on ``out``; True when it PASSED."""
    api = Api(api_url, token)
    try:
        body = {"test_case_id": case_id, "trigger_kind": "manual"}
        execution = api.call("POST", "/api/v1/executions/case", body=body)
        return bool(follow_case(api, execution, out=out)["status"] == Status.PASSED)
    finally:
        api.close()
