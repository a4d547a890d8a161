"""The schedule form of the web interface (api/ui/schedules_page.py): what it holds, read from a
POST (``posted_form``) or from a schedule (``form_of``), and turned into the API's own body models
(``ScheduleCreate``/``ScheduleUpdate``), so the API's validators judge it. Whatever they refuse is
kept in ``form.errors`` under the form's field, with the API's message.

The target is typed by name (a live test case's or suite's), or by id, which goes to the API as is.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Form
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from anvil.domain.enums import Priority
from api.schemas import ScheduleCreate, ScheduleUpdate
from db import schedules as db
from db.models import Schedule, TestCase, TestSuite

OVERLAPS = ("skip", "allow", "cancel_previous")
KINDS = {"case": "test case", "suite": "test suite"}
# The API's field names (``body.test_case_id`` …) -> the form's.
FORM_FIELD = {"test_case_id": "target", "test_suite_id": "target"}
TARGETS = ("test_case_id", "test_suite_id")


@dataclass
class ScheduleForm:
    """The form's values as typed, and its errors by field."""

    name: str = ""
    target_kind: str = "case"
    target: str = ""
    cron: str = ""
    timezone: str = "UTC"
    priority: str = Priority.NORMAL.value
    overlap: str = "skip"
    enabled: bool = True
    params: str = "{}"
    errors: dict[str, str] = field(default_factory=dict)


FormText = Annotated[str, Form()]


def posted_form(
    name: FormText = "",
    target_kind: FormText = "case",
    target: FormText = "",
    cron: FormText = "",
    timezone: FormText = "UTC",
    priority: FormText = Priority.NORMAL.value,
    overlap: FormText = "skip",
    enabled: Annotated[bool, Form()] = False,  # an unticked checkbox sends nothing
    params: FormText = "{}",
) -> ScheduleForm:
    """The form of a POST (a dependency)."""
    return ScheduleForm(
        name=name.strip(),
        target_kind=target_kind,
        target=target.strip(),
        cron=" ".join(cron.split()),  # as the API stores it: an unchanged cron compares equal
        timezone=timezone.strip(),
        priority=priority,
        overlap=overlap,
        enabled=enabled,
        params=params,
    )


def form_of(session: Session, schedule: Schedule) -> ScheduleForm:
    """The form showing ``schedule`` as it is."""
    kind = "case" if schedule.test_case_id is not None else "suite"
    target_id = schedule.test_case_id or schedule.test_suite_id
    name, deleted = db.targets_of(session, [schedule]).get(target_id, ("", True)) if target_id else ("", True)
    return ScheduleForm(
        name=schedule.name,
        target_kind=kind,
        # A deleted target is shown by id: its name may belong to a newer case by now.
        target=str(target_id) if deleted else name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        priority=schedule.priority,
        overlap=schedule.overlap,
        enabled=schedule.enabled,
        params=json.dumps(schedule.params, indent=2, ensure_ascii=False),
    )


def create_body(session: Session, form: ScheduleForm) -> ScheduleCreate | None:
    """The POST /api/v1/schedules body the form means; None when something is wrong (see errors)."""
    return _validated(ScheduleCreate, form, _fields(session, form))


def update_body(session: Session, form: ScheduleForm, schedule: Schedule) -> ScheduleUpdate | None:
    """The PATCH body of what the form changes in ``schedule`` (only that: an unchanged cron must not
    restart its slots); None when something is wrong (see errors)."""
    fields = _fields(session, form)
    current = asdict(form_of(session, schedule))
    changes = {
        key: value
        for key, value in fields.items()
        if key not in (*TARGETS, "params") and value != current[key]
    }
    if "params" in fields and fields["params"] != schedule.params:
        changes["params"] = fields["params"]
    for key in TARGETS:
        if key in fields and fields[key] != getattr(schedule, key):
            changes[key] = fields[key]
    return _validated(ScheduleUpdate, form, changes)


def field_of(where: str | None) -> str:
    """The form's field for an API error's ``field`` (``body.cron`` -> ``cron``)."""
    name = (where or "").removeprefix("body.").split(".")[0]
    return FORM_FIELD.get(name, name or "form")


def _fields(session: Session, form: ScheduleForm) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": form.name,
        "cron": form.cron,
        "timezone": form.timezone,
        "priority": form.priority,
        "overlap": form.overlap,
        "enabled": form.enabled,
    }
    try:
        params = json.loads(form.params or "{}")
    except json.JSONDecodeError as exc:
        form.errors["params"] = f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    else:
        if isinstance(params, dict):
            fields["params"] = params
        else:
            form.errors["params"] = 'give a JSON object, e.g. {"env": "staging"}'
    target = _target_id(session, form)
    if target is not None:
        fields["test_case_id" if form.target_kind == "case" else "test_suite_id"] = target
    return fields


def _target_id(session: Session, form: ScheduleForm) -> uuid.UUID | None:
    what = KINDS.get(form.target_kind)
    if what is None:
        form.errors["target"] = "choose a test case or a test suite"
        return None
    if not form.target:
        form.errors["target"] = f"give the {what}'s name (or id)"
        return None
    try:
        return uuid.UUID(form.target)  # the API says whether it exists
    except ValueError:
        pass
    model = TestCase if form.target_kind == "case" else TestSuite
    found = session.scalar(select(model.id).where(model.name == form.target, model.deleted_at.is_(None)))
    if found is None:
        form.errors["target"] = f"there is no {what} named {form.target!r}"
    return found


Body = TypeVar("Body", ScheduleCreate, ScheduleUpdate)


def _validated(model: type[Body], form: ScheduleForm, fields: dict[str, Any]) -> Body | None:
    try:
        body = model.model_validate(fields)
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            form.errors.setdefault(field_of(".".join(str(p) for p in error["loc"])), message)
        return None
    return None if form.errors else body
