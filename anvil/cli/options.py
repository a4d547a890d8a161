"""Options several command groups share: where the API is, whose token, raw JSON, a priority."""

from __future__ import annotations

from typing import Annotated

import typer

from anvil.domain.enums import Priority

DEFAULT_API_URL = "http://127.0.0.1:8000"

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="ANVIL_API_URL", help="Anvil API base URL", show_envvar=True)
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ANVIL_TOKEN",
        show_envvar=True,
        show_default=False,
        help="bearer token (default: ANVIL_TOKEN, else the one `anvil dev` wrote to .anvil/token)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print the raw JSON")]
PriorityOption = Annotated[Priority, typer.Option(case_sensitive=False, help="queue priority")]
