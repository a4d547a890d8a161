"""Anvil's vocabulary: statuses and their transitions, enums, retry and schedule policy, step
records and outcomes, spec models, workspace name rules.

Pure code: it imports nothing of ``db``, ``api``, ``workers`` or ``scheduler``, so every layer
can use it (tests/unit/test_layers.py holds it to that).
"""
