"""The test secrets one execution names: read and decrypted by the worker when it runs the test.

The snapshot's references (``{"secret": NAME}`` in env maps) are replaced by their values in a
copy that only the runner sees, so the values go into the test process's environment and nowhere
else; the worker then redacts them from everything the test records (workers/redact.py).
"""

from __future__ import annotations

from typing import Any

from anvil.settings import Settings
from db.secrets import box_for, references, reveal, with_values
from db.session import new_session


def reveal_for(snapshot: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """The snapshot with its secrets' values in place, and those values (to redact).

    db.secrets.SecretUnavailable when one is gone or cannot be decrypted (the run ends ERROR).
    """
    names = {ref.name for ref in references(snapshot["spec"])}
    if not names:
        return snapshot, []
    box = box_for(settings) if settings.secrets_key is not None else None
    with new_session() as session:
        values = reveal(session, names=names, box=box)
    return {**snapshot, "spec": with_values(snapshot["spec"], values)}, list(values.values())
