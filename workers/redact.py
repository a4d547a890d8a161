"""Redaction of test secrets from what a test printed, before anything of it is stored.

Every occurrence of a secret's value becomes ``***``. Occurrences may overlap or nest (one value
inside another): the union of all of them is masked, so no part of any value survives. Empty
values are ignored (they would match everywhere).

Output is capped before it reaches us: the sandbox keeps the head and the tail of a step's output
and puts a marker (``... [N bytes of output truncated] ...``) between them, the pytest plugin does
the same per test, and behave's text is cut at its end. pytest also abbreviates long values in its
assertion messages (``'tok-6afc...c348'``). A value cut in two there is no longer found whole, so
at each cut (a marker, or an ellipsis) a piece of a value that touches it (the end of the text
before, the start of the text after) is masked too, from PIECE_MIN characters on: a shorter piece
tells next to nothing about a value, while masking it would hide ordinary text next to every cut.
Error texts may be cut at either end without a marker, so their ends count as cuts (``cut_ends``).
The pieces are found in one pass over the text (Knuth-Morris-Pratt), whatever a test prints.

Only literal values are found: a test that prints a secret encoded (base64, reversed, one
character per line) defeats any redaction, which is why secrets go only to the tests that name
them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from anvil.domain.steps import StepRecord

MASK = "***"
PIECE_MIN = 3
# The truncation markers of workers/sandbox.py and workers/pytest_plugin.py (between a head and a
# tail), and of workers/behave_formatter.py (at the end); and an ellipsis, as pytest and reprlib
# put it into an abbreviated value.
CUT = re.compile(
    r"\n\.\.\. \[(?:\d+ bytes of output |\d+ characters )?truncated\](?: \.\.\.\n)?|\.\.\.|\u2026"
)


def redact(text: str, values: Iterable[str], *, cut_ends: bool = False) -> str:
    """``text`` with every occurrence of each of ``values`` replaced by ``***``.

    ``cut_ends``: the text may have been cut at its start or end (pieces of values there are
    masked too, as at truncation markers).
    """
    secrets = sorted({v for v in values if v}, key=len, reverse=True)
    if not secrets or not text:
        return text
    spans = _whole(text, secrets)
    cuts = list(CUT.finditer(text))
    befores, afters = [m.start() for m in cuts], [m.end() for m in cuts]
    if cut_ends:
        befores.append(len(text))
        afters.append(0)
    if befores:
        for value in secrets:
            spans += _pieces(text, value, befores, afters)
    return _mask(text, spans)


def _whole(text: str, secrets: list[str]) -> list[tuple[int, int]]:
    spans = []
    for value in secrets:
        start = text.find(value)
        while start != -1:
            spans.append((start, start + len(value)))
            start = text.find(value, start + 1)  # overlapping occurrences too ("aa" in "aaa")
    return spans


def _pieces(text: str, value: str, befores: list[int], afters: list[int]) -> list[tuple[int, int]]:
    """The longest start of ``value`` ending at each cut in ``befores``, and the longest end of it
    starting at each cut in ``afters``, from PIECE_MIN characters on.

    Found with the Knuth-Morris-Pratt automaton (linear time whatever the value and the text, so a
    test cannot make this slow by what it prints): its state after reading ``text[:p]`` is the
    length of the longest start of the value that ``text[:p]`` ends with. Ends of the value are
    starts of it reversed.
    """
    spans = []
    forward = _matched(text, value, befores)
    for cut in befores:
        if forward[cut] >= PIECE_MIN:
            spans.append((cut - forward[cut], cut))
    size = len(text)
    backward = _matched(text[::-1], value[::-1], [size - cut for cut in afters])
    for cut in afters:
        if backward[size - cut] >= PIECE_MIN:
            spans.append((cut, cut + backward[size - cut]))
    return spans


def _matched(text: str, value: str, wanted: list[int]) -> dict[int, int]:
    """For each position p in ``wanted``: the longest start of ``value`` that ``text[:p]`` ends with
    (shorter than the whole value). One pass, which skips what lies further than the value's length
    before the next position: at most the whole text, or the value's length per position."""
    longest = len(value) - 1
    failure = _failure(value)
    states: dict[int, int] = {}
    state, read = 0, 0
    for p in sorted(set(wanted)):
        start = max(read, p - longest)
        if start > read:
            state = 0  # nothing before ``start`` can be part of a piece ending at p
        for ch in text[start:p]:
            while state and (state == len(value) or value[state] != ch):
                state = failure[state - 1]
            if state < len(value) and value[state] == ch:
                state += 1
        read = max(read, p)
        states[p] = min(state, longest)
    return states


def _failure(value: str) -> list[int]:
    """KMP's failure function: for each i, the longest proper border of ``value[: i + 1]``."""
    table = [0] * len(value)
    k = 0
    for i in range(1, len(value)):
        while k and value[i] != value[k]:
            k = table[k - 1]
        if value[i] == value[k]:
            k += 1
        table[i] = k
    return table


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each run of overlapping or touching spans by one mask."""
    if not spans:
        return text
    out, position = [], 0
    for start, end in _merged(spans):
        out += [text[position:start], MASK]
        position = end
    out.append(text[position:])
    return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def redact_value(value: Any, secrets: Iterable[str]) -> Any:
    """Every string inside ``value`` (a JSON-like structure: dicts, lists) redacted."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    return value


def redact_step(step: StepRecord, secrets: Iterable[str]) -> StepRecord:
    """A step with its name, output, error and details redacted (what the test printed may be
    anywhere: a pytest id of a parametrised test, a failure message, captured output)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return step
    return dataclasses.replace(
        step,
        name=redact(step.name, secrets),
        # A capped output holds a marker (sandbox, pytest) or is cut at its end (behave).
        output=redact(step.output, secrets, cut_ends=step.output_truncated) if step.output else step.output,
        error=redact(step.error, secrets, cut_ends=True) if step.error else step.error,
        details=redact_value(step.details, secrets),
    )
