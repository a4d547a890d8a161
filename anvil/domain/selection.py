"""Selective execution that explains itself: which tests a set of rules selects, and why.

Rules are combined as a union; ``exclude`` rules then drop what they match. Every known test of
every case in scope gets ``selected`` and the rule (with a one-line reason) that selected it, or
why it was dropped. A case is run *whole* (its own arguments, new tests included) when a rule
selects the case itself (``all``, ``tag:``, ``group:``, a ``tag:`` target of a file map, a changed
path with no mapping, ``new`` on a case with no history) or every known test of it; otherwise only
its selected tests run.

Pure: the caller passes in what the history says of each test (db/selection.py reads it), the
changed paths and the file maps. The rules themselves: anvil/domain/rules.py; file maps:
anvil/domain/file_maps.py; observation mode's arithmetic: anvil/domain/observation.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anvil.domain.file_maps import glob_regex, under
from anvil.domain.results import FAILING
from anvil.domain.rules import MAX_REASONS_STORED, Rule, RuleError

# ---- what is known, and what is chosen ------------------------------------------------------------


# TestFacts and Choice are built once per test (thousands per selection) and never changed:
# slotted, not frozen, as a frozen dataclass's __init__ costs five times as much.
@dataclass(slots=True)
class TestFacts:
    """What the history says of one test (db/selection.py gathers it)."""

    __test__ = False
    key: str
    file: str | None = None
    recent: tuple[str, ...] = ()  # its latest statuses, newest first (up to the largest N asked)
    runs: int = 0  # results in the window, skipped ones left out
    failures: int = 0  # failed or error, in the window
    flaky: str | None = None  # the evidence, when flaky in the window
    p50_s: float | None = None  # median duration in the window
    on_branch: bool = True  # has a result on the scope's branch


@dataclass(frozen=True)
class CaseFacts:
    id: Any
    name: str
    kind: str
    tags: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()  # the suites named by group: rules that hold it
    file_map: Mapping[str, Sequence[str]] = field(default_factory=dict)
    tests: tuple[TestFacts, ...] = ()


@dataclass(frozen=True)
class Request:
    rules: tuple[Rule, ...]
    exclude: tuple[Rule, ...] = ()
    changed_files: tuple[str, ...] = ()
    observe: bool = False
    branch: str | None = None

    def stored(self) -> dict[str, Any]:
        return {
            "rules": [str(r) for r in self.rules],
            "exclude": [str(r) for r in self.exclude],
            "changed_files": list(self.changed_files[:100]),
            "changed_files_total": len(self.changed_files),
            "observe": self.observe,
        }


@dataclass(slots=True)
class Choice:
    """One test: selected or not, the rule that decided (an exclude rule when it dropped it), why."""

    key: str
    selected: bool
    rule: str | None
    reason: str


@dataclass(frozen=True)
class CaseChoice:
    case: CaseFacts
    tests: tuple[Choice, ...]
    whole: bool  # run the case as it is; else only the selected tests
    rule: str | None = None  # what selected (or dropped) the case itself
    reason: str | None = None

    @property
    def selected_keys(self) -> list[str]:
        return [c.key for c in self.tests if c.selected]

    @property
    def selected(self) -> bool:
        return self.whole or any(c.selected for c in self.tests)

    def stored(self, request: Request) -> dict[str, Any]:
        """What the execution keeps (Execution.selection): bounded reasons, every selected key."""
        keys = self.selected_keys
        reasons = {c.key: f"{c.rule}: {c.reason}" for c in self.tests if c.selected}
        kept = dict(list(reasons.items())[:MAX_REASONS_STORED])
        return {
            **request.stored(),
            "whole": self.whole,
            "reason": self.reason,
            "counts": {"selected": len(keys), "total": len(self.tests)},
            "tests": keys,
            "reasons": kept,
            "reasons_truncated": len(kept) < len(reasons),
        }


@dataclass(frozen=True)
class Selection:
    request: Request
    cases: tuple[CaseChoice, ...]
    notes: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        return {
            "selected": sum(len(c.selected_keys) for c in self.cases),
            "total": sum(len(c.tests) for c in self.cases),
            "cases_selected": sum(c.selected for c in self.cases),
            "cases_total": len(self.cases),
        }

    def stored(self) -> dict[str, Any]:
        """What a suite execution keeps: the request, the counts, which cases were left out."""
        dropped = [c.case.name for c in self.cases if not c.selected]
        return {
            **self.request.stored(),
            "counts": self.counts,
            "cases_dropped": dropped[:MAX_REASONS_STORED],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Scope:
    """What rules over the whole scope found: the slowest tests, what changed files select."""

    slowest: dict[int, dict[tuple[int, str], int]]  # N -> (case index, key) -> rank
    changed_tests: dict[tuple[int, str], str]  # (case index, key) -> reason
    changed_cases: dict[int, str]  # case index -> reason (selected whole)
    notes: tuple[str, ...]


def runs_whole(stored: Mapping[str, Any] | None) -> bool:
    """Whether an execution's stored selection runs its case as defined: none, an observation
    (everything runs), or a selection that takes the case whole."""
    return not stored or bool(stored.get("observe") or stored.get("whole"))


def choose(request: Request, cases: Sequence[CaseFacts]) -> Selection:
    """Every test of every case, selected or not, with the rule and the reason."""
    if (
        any(r.name == "changed-files" for r in (*request.rules, *request.exclude))
        and not request.changed_files
    ):
        raise RuleError("the changed-files rule needs changed_files (the CLI's --changed-file or --since)")
    scope = _scope(request, cases)
    return Selection(
        request, tuple(_choose(request, scope, index, case) for index, case in enumerate(cases)), scope.notes
    )


def _choose(request: Request, scope: _Scope, index: int, case: CaseFacts) -> CaseChoice:
    case_hit = _first(request.rules, lambda r: _case_match(r, scope, index, case))
    case_out = _first(request.exclude, lambda r: _case_match(r, scope, index, case))
    if case_out is not None:
        rule, why = case_out
        dropped = tuple(Choice(t.key, False, rule, f"excluded: {why}") for t in case.tests)
        return CaseChoice(case, dropped, False, rule, f"excluded: {why}")
    if not case.tests:
        if case_hit is None and any(r.name == "new" for r in request.rules):
            case_hit = ("new", "no history: the case has never recorded a test")
        picked: tuple[str | None, str] = case_hit or (None, "no history: no known test matches a rule")
        return CaseChoice(case, (), case_hit is not None, *picked)
    choices = []
    for test in case.tests:
        out = _first(request.exclude, lambda r: _test_match(r, scope, index, case, test))  # noqa: B023
        hit = case_hit or _first(request.rules, lambda r: _test_match(r, scope, index, case, test))  # noqa: B023
        if out is not None:
            choices.append(Choice(test.key, False, out[0], f"excluded: {out[1]}"))
        elif hit is not None:
            choices.append(Choice(test.key, True, hit[0], hit[1]))
        else:
            choices.append(Choice(test.key, False, None, "matched no rule"))
    if not all(c.selected for c in choices):
        return CaseChoice(case, tuple(choices), False)
    picked = case_hit or (None, "every known test is selected")
    return CaseChoice(case, tuple(choices), True, *picked)


def _first(rules: Sequence[Rule], match: Callable[[Rule], str | None]) -> tuple[str, str] | None:
    for rule in rules:
        why = match(rule)
        if why:
            return str(rule), why
    return None


def _case_match(rule: Rule, scope: _Scope, index: int, case: CaseFacts) -> str | None:
    if rule.name == "all":
        return "every test"
    if rule.name == "tag" and rule.value in case.tags:
        return f"the case is tagged {rule.value}"
    if rule.name == "group" and rule.value in case.groups:
        return f"the case is a member of suite {rule.value}"
    if rule.name == "changed-files" and index in scope.changed_cases:
        return scope.changed_cases[index]
    return None


def _test_match(rule: Rule, scope: _Scope, index: int, case: CaseFacts, test: TestFacts) -> str | None:
    if rule.name == "failed-in-last":
        assert isinstance(rule.value, int)
        last = test.recent[: rule.value]
        failed = sum(status in FAILING for status in last)
        return f"failed in {failed} of its last {len(last)} runs" if failed else None
    if rule.name == "failure-rate-above":
        assert isinstance(rule.value, float)
        rate = test.failures / test.runs if test.runs else 0.0
        if test.runs and rate > rule.value:
            runs = f"{test.failures} of {test.runs} runs in the window"
            return f"failure rate {rate:.2f} ({runs}) is above {rule.value:g}"
        return None
    if rule.name == "flaky":
        return f"flaky: {test.flaky}" if test.flaky else None
    if rule.name == "new":
        return None if test.on_branch else "no result on this branch yet"
    if rule.name == "slowest":
        assert isinstance(rule.value, int)
        rank = scope.slowest[rule.value].get((index, test.key))
        return f"number {rank} by median duration ({test.p50_s:.3f}s)" if rank else None
    if rule.name == "changed-files":
        return scope.changed_tests.get((index, test.key))
    return _case_match(rule, scope, index, case)


def _scope(request: Request, cases: Sequence[CaseFacts]) -> _Scope:
    rules = (*request.rules, *request.exclude)
    slowest: dict[int, dict[tuple[int, str], int]] = {}
    for n in {int(r.value) for r in rules if r.name == "slowest" and r.value is not None}:
        timed = [(t.p50_s, i, t.key) for i, c in enumerate(cases) for t in c.tests if t.p50_s is not None]
        timed.sort(key=lambda x: (-x[0], x[1], x[2]))
        slowest[n] = {(i, key): rank for rank, (_, i, key) in enumerate(timed[:n], start=1)}
    tests: dict[tuple[int, str], str] = {}
    whole: dict[int, str] = {}
    notes: list[str] = []
    if any(r.name == "changed-files" for r in rules):
        notes = _changed(request.changed_files, cases, tests, whole)
    return _Scope(slowest, tests, whole, tuple(notes))


def _changed(
    paths: Sequence[str],
    cases: Sequence[CaseFacts],
    tests: dict[tuple[int, str], str],
    whole: dict[int, str],
) -> list[str]:
    """Fill in what the changed paths select; returns notes on paths that no mapping covers.

    A changed test file selects its own tests; a changed source file what the case's file map
    (the suite's merged in: ``with_suite_map``) maps it to. A path no map and no test file
    covers selects everything: nobody said what it affects.
    """
    maps = [(i, c.file_map) for i, c in enumerate(cases)]
    compiled = {glob: glob_regex(glob) for _, fmap in maps for glob in fmap}
    by_file: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, case in enumerate(cases):
        for test in case.tests:
            if test.file:
                by_file[test.file].append((i, test.key))
    fired: dict[tuple[int, str, str], str] = {}  # (case, glob, target) -> the first path that fired it
    notes: list[str] = []
    for path in paths:
        parts = path.split("/")
        # The path itself, or a path ending in it (the workspace may be a directory of the repository).
        hits = [hit for k in range(len(parts)) for hit in by_file.get("/".join(parts[k:]), ())]
        covered = bool(hits)
        for hit in hits:
            tests.setdefault(hit, f"its file {path} changed")
        for owner, fmap in maps:
            for glob, targets in fmap.items():
                if compiled[glob].match(path):
                    covered = True
                    for target in targets:
                        fired.setdefault((owner, glob, target), path)
        if not covered:
            notes.append(f"{path} is no known test file and matches no file_map glob: everything selected")
            for i in range(len(cases)):
                whole.setdefault(i, f"{path} has no mapping: everything selected")
    for (owner, glob, target), path in fired.items():
        _target(path, glob, target, cases, owner, tests, whole)
    return notes


def _target(
    path: str,
    glob: str,
    target: str,
    cases: Sequence[CaseFacts],
    owner: int,
    tests: dict[tuple[int, str], str],
    whole: dict[int, str],
) -> None:
    """What one file-map target selects; a case's own map reaches only that case."""
    why = f"{path} matches {glob} -> {target}"
    case = cases[owner]
    if target.startswith("tag:"):
        if target[4:] in case.tags:
            whole.setdefault(owner, why)
        return
    for test in case.tests:
        if under(test.key, target) or (test.file and under(test.file, target)):
            tests.setdefault((owner, test.key), why)


def with_suite_map(cases: Sequence[CaseFacts], suite_map: Mapping[str, Sequence[str]]) -> list[CaseFacts]:
    """The suite's file map applies to every member: merged into each member's own map."""
    if not suite_map:
        return list(cases)
    merged = []
    for case in cases:
        fmap: dict[str, list[str]] = {glob: list(targets) for glob, targets in case.file_map.items()}
        for glob, targets in suite_map.items():
            fmap[glob] = list(dict.fromkeys([*fmap.get(glob, []), *targets]))
        merged.append(CaseFacts(case.id, case.name, case.kind, case.tags, case.groups, fmap, case.tests))
    return merged
