"""Anvil: distributed test execution. Cross-cutting pieces: settings, errors, CLI, standalone supervisor."""

__version__ = "0.1.0"
