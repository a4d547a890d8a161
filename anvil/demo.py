"""The sample test case of standalone mode: register it (once) and run it (`anvil dev --demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from anvil.client import Api, ApiError, follow, resolve_case
from anvil.migrate import ROOT
from db.states import Status

SAMPLE_CASE = Path("examples/hello-case.json")


class SampleError(Exception):
    """The sample case could not be read or registered."""


def sample_case_file() -> Path | None:
    """examples/hello-case.json of the current directory, else the one shipped with Anvil's sources."""
    for path in (SAMPLE_CASE, ROOT / SAMPLE_CASE):
        if path.is_file():
            return path
    return None


def register_sample(api_url: str, token: str) -> tuple[str, str] | None:
    """The sample case's (id, name), created through the API unless a case of that name exists."""
    path = sample_case_file()
    if path is None:
        return None
    try:
        definition = json.loads(path.read_text())
        name = str(definition["name"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SampleError(f"{path} is not a readable test case definition: {exc}") from exc
    api = Api(api_url, token)
    try:
        case = api.call("POST", "/api/v1/test-cases", body=definition)
        return str(case["id"]), name
    except ApiError as exc:
        if exc.status != 409:  # 409: a case of that name exists already; use it
            raise SampleError(f"cannot register {path}: {exc}") from exc
        return resolve_case(api, name), name
    finally:
        api.close()


def run_demo(api_url: str, token: str, case_id: str, *, out: Console) -> bool:
    """Submit the sample case and follow it to the end on ``out``; True when it PASSED."""
    api = Api(api_url, token)
    try:
        body = {"test_case_id": case_id, "trigger_kind": "manual"}
        execution = api.call("POST", "/api/v1/executions/case", body=body)
        return bool(follow(api, execution["id"], out=out)["status"] == Status.PASSED)
    finally:
        api.close()
