"""The webhooks page, ``/ui/webhooks`` (maintainer or admin, as the API): each subscription with
its events, filters and delivery counts, its latest deliveries (status code, latency, attempts,
error), and buttons to send a test event and to pause or resume it — through the API's own handlers
(api/routes/webhooks.py). Subscriptions are created with `anvil webhooks create` or the API: the
signing secret is shown once, which a terminal keeps better than a page."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from anvil.domain.enums import Role
from anvil.errors import NotFound
from api.deps import SessionDep, SettingsDep
from api.routes import webhooks as api
from api.ui.pages import PageRoute, render
from api.ui.session import FormUser, PageUser
from api.webhook_schemas import WebhookUpdate
from db.models import Schedule, TestCase, TestSuite

router = APIRouter(route_class=PageRoute)
LOG_SHOWN = 10


def _ident(webhook_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(webhook_id)
    except ValueError:
        raise NotFound(f"no webhook {webhook_id!r}") from None


def _names(session: SessionDep, hooks: list[Any]) -> dict[str, str]:
    """The names of the cases, suites and schedules the filters name by id."""
    wanted: dict[Any, set[uuid.UUID]] = {TestCase: set(), TestSuite: set(), Schedule: set()}
    for hook in hooks:
        for key, model in (("case_ids", TestCase), ("suite_ids", TestSuite), ("schedule_ids", Schedule)):
            wanted[model].update(uuid.UUID(i) for i in hook.filters.get(key, []))
    found: dict[str, str] = {}
    for model, ids in wanted.items():
        if ids:
            found.update(
                (str(i), n) for i, n in session.execute(select(model.id, model.name).where(model.id.in_(ids)))
            )
    return found


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, viewer: PageUser, session: SessionDep) -> HTMLResponse:
    viewer.need(Role.MAINTAINER)
    hooks = api.list_webhooks(viewer.user, session).items
    logs = {
        h.id: api.list_deliveries(h.id, viewer.user, session, limit=LOG_SHOWN, cursor=None).items
        for h in hooks
    }
    return render(request, "webhooks.html", viewer, hooks=hooks, logs=logs, names=_names(session, hooks))


@router.post("/webhooks/{webhook_id}/test")
def send_test(webhook_id: str, viewer: FormUser, session: SessionDep) -> Response:
    viewer.need(Role.MAINTAINER)
    api.send_test_event(_ident(webhook_id), viewer.user, session)
    return RedirectResponse(f"/ui/webhooks#w-{webhook_id}", status_code=303)


def _set_enabled(
    webhook_id: str, viewer: Any, session: SessionDep, settings: SettingsDep, on: bool
) -> Response:
    viewer.need(Role.MAINTAINER)
    api.update_webhook(_ident(webhook_id), WebhookUpdate(enabled=on), viewer.user, session, settings)
    return RedirectResponse(f"/ui/webhooks#w-{webhook_id}", status_code=303)


@router.post("/webhooks/{webhook_id}/pause")
def pause(webhook_id: str, viewer: FormUser, session: SessionDep, settings: SettingsDep) -> Response:
    """Hold its deliveries (new events for it are not written while it is paused)."""
    return _set_enabled(webhook_id, viewer, session, settings, False)


@router.post("/webhooks/{webhook_id}/resume")
def resume(webhook_id: str, viewer: FormUser, session: SessionDep, settings: SettingsDep) -> Response:
    return _set_enabled(webhook_id, viewer, session, settings, True)
