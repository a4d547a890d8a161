"""The quarantine buttons of the tests pages: form POSTs to ``/ui/tests/{id}/quarantine`` and
``/ui/tests/{id}/release``. They run the API's own handlers (api/routes/quarantine.py) after its own
role check (api/deps.require), so the permission, the validation of the reason and expiry, and the
audit row are the API's; a page shows the buttons only to the roles that check lets through."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from anvil.domain.enums import Role
from anvil.errors import InvalidInput, NotFound
from api.deps import SessionDep, require
from api.quarantine_schemas import MAX_DAYS, QuarantineCreate, QuarantineRelease
from api.routes.quarantine import quarantine_test, release_test
from api.ui.pages import PageRoute
from api.ui.session import FormUser, SignedIn

router = APIRouter(route_class=PageRoute)

ROLE = Role.MAINTAINER  # as the API's Maintainer dependency on both endpoints
MESSAGES = {
    "reason": "give the reason for the quarantine (1 to 2,000 characters)",
    "expires_in_days": f"the expiry is a number of days above 0 and at most {MAX_DAYS}",
}


async def maintainer_form(viewer: FormUser) -> SignedIn:
    """A form POST (CSRF checked) by a user the API's quarantine endpoints would let through."""
    await require(ROLE)(viewer.user)
    return viewer


MaintainerForm = Annotated[SignedIn, Depends(maintainer_form)]


def test_ident(test_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(test_id)
    except ValueError:
        raise NotFound(f"there is no test {test_id!r}") from None


def may_quarantine(viewer: SignedIn) -> bool:
    return viewer.may(ROLE)


def _back(back: str, test_id: str) -> str:
    """Where the form came from: a tests page of this site, else the test's own page."""
    if back.startswith("/ui/tests") and "//" not in back and "\\" not in back:
        return back
    return f"/ui/tests/{test_id}"


def _body(reason: str, expires_in_days: str) -> QuarantineCreate:
    try:
        days = float(expires_in_days) if expires_in_days.strip() else None
    except ValueError:
        raise InvalidInput(f"expires in days: {MESSAGES['expires_in_days']}") from None
    try:
        return QuarantineCreate(reason=reason, expires_in_days=days)
    except ValidationError as exc:
        where = str(exc.errors()[0]["loc"][0])
        raise InvalidInput(
            f"{where.replace('_', ' ')}: {MESSAGES.get(where, exc.errors()[0]['msg'])}"
        ) from None


@router.post("/tests/{test_id}/quarantine")
def quarantine(
    test_id: str,
    viewer: MaintainerForm,
    session: SessionDep,
    reason: Annotated[str, Form(max_length=4000)] = "",
    expires_in_days: Annotated[str, Form(max_length=20)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    ident = test_ident(test_id)
    quarantine_test(ident, _body(reason, expires_in_days), viewer.user, session, Response())
    return RedirectResponse(_back(back, str(ident)), status_code=303)


@router.post("/tests/{test_id}/release")
def release(
    test_id: str,
    viewer: MaintainerForm,
    session: SessionDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    ident = test_ident(test_id)
    body = QuarantineRelease(reason=reason) if reason.strip() else None
    release_test(ident, viewer.user, session, reason=None, body=body)
    return RedirectResponse(_back(back, str(ident)), status_code=303)
