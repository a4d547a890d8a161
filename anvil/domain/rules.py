"""The rules of selective execution: what each means (``CATALOGUE``, shown by GET /api/v1/rules and
`anvil rules list`) and how a rule's text is read (``parse_rule``), refused with a clear reason."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_RECENT = 100  # failed-in-last:N reads at most this many results per test
MAX_RULES = 20
MAX_REASONS_STORED = 200  # per execution: the reasons kept with it (the dry run shows them all)
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class RuleSpec:
    name: str
    parameter: str | None
    meaning: str

    @property
    def syntax(self) -> str:
        return f"{self.name}:{self.parameter}" if self.parameter else self.name


CATALOGUE = (
    RuleSpec("all", None, "every test"),
    RuleSpec("tag", "<tag>", "every test of the cases carrying the tag"),
    RuleSpec("group", "<suite>", "every test of the cases of the named suite"),
    RuleSpec(
        "failed-in-last",
        "<N>",
        f"tests that failed or errored in any of their last N runs (N 1-{MAX_RECENT})",
    ),
    RuleSpec(
        "failure-rate-above", "<x>", "tests whose failure rate over the flaky window is above x (0 to 1)"
    ),
    RuleSpec(
        "flaky",
        None,
        "tests flaky in the flaky window (same-revision, passed-on-retry or flip-rate evidence)",
    ),
    RuleSpec(
        "new", None, "tests with no result on the submission's branch; a case with no history runs whole"
    ),
    RuleSpec("slowest", "<N>", "the N slowest tests of the scope by median duration over the flaky window"),
    RuleSpec(
        "changed-files",
        None,
        "for changed_files: a changed test file selects its tests, a changed source file what the "
        "file_map maps it to; a path with no mapping selects everything",
    ),
)
SPECS = {spec.name: spec for spec in CATALOGUE}
CASE_RULES = frozenset({"all", "tag", "group"})  # rules about cases, not tests


class RuleError(ValueError):
    """A rule that does not parse; the message names it."""


@dataclass(frozen=True)
class Rule:
    name: str
    value: str | int | float | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def parse_rule(text: str) -> Rule:
    if not isinstance(text, str):
        raise RuleError(f"a rule is a string like 'failed-in-last:3', not {text!r}")
    name, colon, value = text.strip().partition(":")
    spec = SPECS.get(name)
    if spec is None:
        known = ", ".join(s.syntax for s in CATALOGUE)
        raise RuleError(f"unknown rule {text!r}; the rules are {known}")
    if spec.parameter is None:
        if colon:
            raise RuleError(f"rule {text!r}: {name} takes no value")
        return Rule(name)
    if not value:
        raise RuleError(f"rule {text!r}: {name} needs a value, as in {spec.syntax}")
    if name in ("failed-in-last", "slowest"):
        top = MAX_RECENT if name == "failed-in-last" else 100_000
        if not value.isdigit() or not 1 <= int(value) <= top:
            raise RuleError(f"rule {text!r}: N must be a whole number from 1 to {top}")
        return Rule(name, int(value))
    if name == "failure-rate-above":
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not 0 <= rate < 1 or value.lower() in ("nan", "inf"):
            raise RuleError(f"rule {text!r}: x must be a number from 0 up to (not including) 1, e.g. 0.2")
        return Rule(name, rate)
    if name == "tag" and not TAG_VALUE.match(value):
        raise RuleError(f"rule {text!r}: a tag is 1-64 letters, digits, _ . : or -")
    if name == "group" and not 1 <= len(value) <= 200:
        raise RuleError(f"rule {text!r}: a suite name is 1-200 characters")
    return Rule(name, value)


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    rules = tuple(dict.fromkeys(parse_rule(text) for text in texts))
    if len(rules) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} rules")
    return rules
