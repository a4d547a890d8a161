"""Redaction of test secrets from what a test printed (workers/redact.py), by a table of cases."""

from __future__ import annotations

import random

import pytest

from anvil.domain.steps import StepRecord
from workers.redact import CUT, PIECE_MIN, _mask, redact, redact_step

SANDBOX_CUT = "\n... [4096 bytes of output truncated] ...\n"  # workers/sandbox.py's marker
PYTEST_CUT = "\n... [512 characters truncated] ...\n"  # workers/pytest_plugin.py's marker
BEHAVE_CUT = "\n... [truncated]"  # workers/behave_formatter.py's marker, at the end


@pytest.mark.parametrize(
    ("text", "secrets", "cut_ends", "expected"),
    [
        # whole occurrences
        ("token=s3cr3t-value", ["s3cr3t-value"], False, "token=***"),
        ("a s3cr3t b s3cr3t c", ["s3cr3t"], False, "a *** b *** c"),
        ("nothing to hide", ["s3cr3t"], False, "nothing to hide"),
        ("no secrets given", [], False, "no secrets given"),
        ("", ["s3cr3t"], False, ""),
        # empty values are ignored (they would match everywhere)
        ("keep this, hide s3cr3t", ["", "s3cr3t"], False, "keep this, hide ***"),
        # one value inside another: the longer one is masked whole, the shorter one elsewhere too
        ("abcdef and abc", ["abc", "abcdef"], False, "*** and ***"),
        ("abcdef and abc", ["abcdef", "abc"], False, "*** and ***"),
        # overlapping values: nothing of either survives
        ("xx-abcdef-xx", ["abcd", "cdef"], False, "xx-***-xx"),
        # overlapping occurrences of one value
        ("[aaaa]", ["aaa"], False, "[***]"),
        # touching occurrences become one mask
        ("one:tokAtokB:two", ["tokA", "tokB"], False, "one:***:two"),
        # values are literal text, not patterns
        ("a.b*c and aXbbc", ["a.b*c"], False, "*** and aXbbc"),
        # a multi-line value
        ("key:\n-----BEGIN\nabc\n-----END\ndone", ["-----BEGIN\nabc\n-----END"], False, "key:\n***\ndone"),
        # split by the sandbox's output cap: the head ends and the tail starts inside the value
        (f"start tok{SANDBOX_CUT}en123 end", ["token123"], False, f"start ***{SANDBOX_CUT}*** end"),
        # split by the pytest plugin's cap
        (f"x=toke{PYTEST_CUT}n123", ["token123"], False, f"x=***{PYTEST_CUT}***"),
        # behave cuts at the end, with its marker
        (f"value: token1{BEHAVE_CUT}", ["token123"], False, f"value: ***{BEHAVE_CUT}"),
        # a piece shorter than three characters at a cut says next to nothing: left alone
        (f"a t{SANDBOX_CUT}3 b", ["token123"], False, f"a t{SANDBOX_CUT}3 b"),
        # whole occurrences next to a cut are masked as usual
        (f"token123{SANDBOX_CUT}token123", ["token123"], False, f"***{SANDBOX_CUT}***"),
        # pytest abbreviates a long value in an assertion message, keeping its two ends
        (
            "assert 'tok-6afc8fec...80e6067bcc348' == 'x'",
            ["tok-6afc8fec1234580e6067bcc348"],
            False,
            "assert '***...***' == 'x'",
        ),
        (
            "assert 'tok-6afc8fec\u202680e6067bcc348' == 'x'",
            ["tok-6afc8fec1234580e6067bcc348"],
            False,
            "assert '***\u2026***' == 'x'",
        ),
        # an ellipsis next to ordinary text changes nothing
        ("loading... done", ["tok-6afc8fec1234580e6067bcc348"], False, "loading... done"),
        # texts cut at either end without a marker (error messages): the ends count as cuts
        ("en123 and more ... then tok", ["token123"], True, "*** and more ... then ***"),
        ("en123 and more ... then tok", ["token123"], False, "en123 and more ... then tok"),
        # the value itself is whole at an end: masked once
        ("token123", ["token123"], True, "***"),
    ],
)
def test_redact(text: str, secrets: list[str], cut_ends: bool, expected: str) -> None:
    assert redact(text, secrets, cut_ends=cut_ends) == expected


def test_a_step_is_redacted_everywhere_the_test_could_have_printed() -> None:
    step = StepRecord(
        seq=1,
        name="test_login[s3cr3t]",
        status="FAILED",
        output="using s3cr3t",
        error="AssertionError: 's3cr3t' != 'other'",
        details={"message": "s3cr3t", "phases": [{"longrepr": "x s3cr3t y"}], "exit_code": 1},
    )
    redacted = redact_step(step, ["s3cr3t"])
    assert redacted.name == "test_login[***]"
    assert redacted.output == "using ***"
    assert redacted.error == "AssertionError: '***' != 'other'"
    assert redacted.details == {"message": "***", "phases": [{"longrepr": "x *** y"}], "exit_code": 1}
    assert step.output == "using s3cr3t", "the original record is left as it was"


def test_a_truncated_output_is_redacted_at_its_cut() -> None:
    step = StepRecord(
        seq=1, name="s", status="PASSED", output=f"tok{SANDBOX_CUT}en123", output_truncated=True
    )
    assert redact_step(step, ["token123"]).output == f"***{SANDBOX_CUT}***"


def test_without_secrets_the_step_is_the_same_object() -> None:
    step = StepRecord(seq=1, name="s", status="PASSED", output="token=abc")
    assert redact_step(step, []) is step
    assert redact_step(step, [""]) is step


def _by_definition(text: str, values: list[str], cut_ends: bool) -> str:
    """What redact means, computed the slow, obvious way."""
    values = [v for v in values if v]
    spans = [(i, i + len(v)) for v in values for i in range(len(text)) if text.startswith(v, i)]
    befores = [m.start() for m in CUT.finditer(text)] + ([len(text)] if cut_ends else [])
    afters = [m.end() for m in CUT.finditer(text)] + ([0] if cut_ends else [])
    for v in values:
        sizes = range(PIECE_MIN, len(v))
        spans += [(end - k, end) for end in befores for k in sizes if text[:end].endswith(v[:k])]
        spans += [(start, start + k) for start in afters for k in sizes if text[start:].startswith(v[-k:])]
    return _mask(text, spans)


def test_redact_agrees_with_its_definition_on_random_texts() -> None:
    # Few letters and many dots: values overlap, repeat themselves and meet ellipses all the time.
    rng = random.Random(20261201)
    for _ in range(3000):
        text = "".join(rng.choice("ab..") for _ in range(rng.randint(0, 60)))
        values = [
            "".join(rng.choice("ab.") for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(1, 3))
        ]
        cut_ends = rng.random() < 0.5
        assert redact(text, values, cut_ends=cut_ends) == _by_definition(text, values, cut_ends), (
            text,
            values,
            cut_ends,
        )
