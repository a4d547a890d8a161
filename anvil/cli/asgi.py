"""The API app as uvicorn loads it (`anvil api` passes "anvil.cli.asgi:protected_api_app").

A module of its own: with --workers N every serving process imports it, and it should load the API
and nothing of the command line.
"""

from __future__ import annotations


def protected_api_app() -> object:
    """The API app for uvicorn, in a process that has loaded its settings and then dropped its
    secrets from its environment and made itself non-dumpable (anvil/hardening.py)."""
    from anvil.hardening import protect_process
    from anvil.settings import get_settings
    from api.app import app as api_app

    get_settings()
    protect_process()
    return api_app
