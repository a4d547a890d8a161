"""Selection rules, their combination and exclusion, file-map globs, observation arithmetic: tables."""

from __future__ import annotations

import pytest

from anvil.domain.file_maps import check_file_map, glob_regex, under
from anvil.domain.observation import Observed, observe
from anvil.domain.rules import RuleError, parse_rule, parse_rules
from anvil.domain.selection import CaseFacts, Request, TestFacts, choose, with_suite_map

PAY = "tests/payments/test_pay.py"
SHOP = "tests/shop/test_cart.py"


def t(key: str, **facts: object) -> TestFacts:
    return TestFacts(key=key, file=key.split("::", 1)[0], **facts)  # type: ignore[arg-type]


CASE = CaseFacts(
    id="c1",
    name="unit",
    kind="pytest",
    tags=frozenset({"billing"}),
    tests=(
        t(f"{PAY}::test_ok", recent=("passed", "passed", "passed"), runs=3, p50_s=0.1),
        t(f"{PAY}::test_broke", recent=("failed", "passed"), runs=2, failures=1, p50_s=2.0),
        t(f"{SHOP}::test_old_fail", recent=("passed", "passed", "error"), runs=10, failures=5, p50_s=1.0),
        t(
            f"{SHOP}::test_flaky",
            recent=("passed",),
            runs=4,
            failures=1,
            flaky="same_revision abc",
            p50_s=0.5,
        ),
        t(f"{SHOP}::test_fresh", on_branch=False, p50_s=None),
    ),
)
OTHER = CaseFacts(
    id="c2",
    name="api",
    kind="pytest",
    tags=frozenset({"api"}),
    groups=frozenset({"nightly"}),
    tests=(t("tests/api/test_a.py::test_a", recent=("passed",), runs=1, p50_s=5.0),),
)


EVERY = ["test_broke", "test_flaky", "test_fresh", "test_ok", "test_old_fail"]


def selected(request: Request, cases: list[CaseFacts]) -> dict[str, list[str]]:
    return {
        c.case.name: sorted(k.rsplit("::", 1)[-1] for k in c.selected_keys)
        for c in choose(request, cases).cases
    }


def req(*rules: str, exclude: tuple[str, ...] = (), changed: tuple[str, ...] = ()) -> Request:
    return Request(parse_rules(rules), parse_rules(exclude), changed)


@pytest.mark.parametrize(
    ("rules", "exclude", "expected"),
    [
        (["all"], [], {"unit": EVERY, "api": ["test_a"]}),
        (["failed-in-last:1"], [], {"unit": ["test_broke"], "api": []}),
        (["failed-in-last:3"], [], {"unit": ["test_broke", "test_old_fail"], "api": []}),
        (["failure-rate-above:0.4"], [], {"unit": ["test_broke", "test_old_fail"], "api": []}),
        (["failure-rate-above:0.5"], [], {"unit": [], "api": []}),
        (["flaky"], [], {"unit": ["test_flaky"], "api": []}),
        (["new"], [], {"unit": ["test_fresh"], "api": []}),
        (["slowest:2"], [], {"unit": ["test_broke"], "api": ["test_a"]}),
        (["tag:api"], [], {"unit": [], "api": ["test_a"]}),
        (["group:nightly"], [], {"unit": [], "api": ["test_a"]}),
        # union
        (["failed-in-last:1", "flaky"], [], {"unit": ["test_broke", "test_flaky"], "api": []}),
        # exclusion of tests and of whole cases
        (["all"], ["tag:billing"], {"unit": [], "api": ["test_a"]}),
        (["failed-in-last:3", "flaky"], ["failed-in-last:1"], {"unit": ["test_flaky", "test_old_fail"],
         "api": []}),
        (["tag:billing"], ["flaky"], {"unit": [k for k in EVERY if k != "test_flaky"], "api": []}),
    ],
)  # fmt: skip
def test_rules_combine_as_a_union_minus_the_excluded(
    rules: list[str], exclude: list[str], expected: dict[str, list[str]]
) -> None:
    assert selected(req(*rules, exclude=tuple(exclude)), [CASE, OTHER]) == expected


def test_each_test_says_which_rule_chose_it_or_why_it_was_dropped() -> None:
    choice = choose(req("failed-in-last:1", "flaky", exclude=("new",)), [CASE]).cases[0]
    by_name = {c.key.rsplit("::", 1)[-1]: c for c in choice.tests}
    assert (by_name["test_broke"].rule, by_name["test_broke"].reason) == (
        "failed-in-last:1",
        "failed in 1 of its last 1 runs",
    )
    assert by_name["test_flaky"].rule == "flaky" and "same_revision" in by_name["test_flaky"].reason
    assert (by_name["test_ok"].selected, by_name["test_ok"].reason) == (False, "matched no rule")
    assert by_name["test_fresh"].rule == "new" and by_name["test_fresh"].reason.startswith("excluded")
    assert not choice.whole


@pytest.mark.parametrize(
    ("rules", "whole", "reason"),
    [
        (["tag:billing"], True, "the case is tagged billing"),
        (["failed-in-last:100", "flaky", "new", "slowest:10"], True, "every known test is selected"),
        (["failed-in-last:1"], False, None),
    ],
)
def test_a_case_runs_whole_when_nothing_of_it_is_dropped(
    rules: list[str], whole: bool, reason: str | None
) -> None:
    choice = choose(req(*rules), [CASE]).cases[0]
    assert (choice.whole, choice.reason) == (whole, reason)


@pytest.mark.parametrize(
    ("rules", "whole", "reason"),
    [
        (["new"], True, "no history: the case has never recorded a test"),
        (["failed-in-last:5"], False, "no history: no known test matches a rule"),
        (["tag:fresh"], True, "the case is tagged fresh"),
    ],
)
def test_a_case_without_history(rules: list[str], whole: bool, reason: str) -> None:
    empty = CaseFacts(id="c3", name="fresh", kind="pytest", tags=frozenset({"fresh"}))
    choice = choose(req(*rules), [empty]).cases[0]
    assert (choice.whole, choice.selected, choice.reason) == (whole, whole, reason)


MAP = {
    "src/payments/**": ["tests/payments"],
    "src/api/*.py": ["tag:api"],
    "docs/": ["tests/shop/test_cart.py"],
}


@pytest.mark.parametrize(
    ("changed", "expected", "notes"),
    [
        # a changed test file selects its own tests (also when the workspace is a subdirectory)
        ([SHOP], {"unit": ["test_flaky", "test_fresh", "test_old_fail"], "api": []}, 0),
        ([f"repo/sub/{PAY}"], {"unit": ["test_broke", "test_ok"], "api": []}, 0),
        # a changed source file selects what the map maps it to: a path prefix, a tag
        (["src/payments/gateway/card.py"], {"unit": ["test_broke", "test_ok"], "api": []}, 0),
        (["src/api/routes.py"], {"unit": [], "api": ["test_a"]}, 0),
        (["docs/guide/index.md"], {"unit": ["test_flaky", "test_fresh", "test_old_fail"], "api": []}, 0),
        # * does not cross directories; an unmapped path selects everything, and says so
        (["src/api/v2/routes.py"], {"unit": EVERY, "api": ["test_a"]}, 1),
    ],
)  # fmt: skip
def test_changed_files_with_a_suite_file_map(
    changed: list[str], expected: dict[str, list[str]], notes: int
) -> None:
    cases = with_suite_map([CASE, OTHER], MAP)
    selection = choose(req("changed-files", changed=tuple(changed)), cases)
    assert selected(req("changed-files", changed=tuple(changed)), cases) == expected
    assert len(selection.notes) == notes
    if notes:
        assert all(c.whole and "has no mapping" in (c.reason or "") for c in selection.cases)


def test_a_case_map_reaches_only_its_own_case() -> None:
    own = CaseFacts(id="c1", name="unit", kind="pytest", file_map={"lib/**": ["tests"]}, tests=CASE.tests)
    got = selected(req("changed-files", changed=("lib/x.py",)), [own, OTHER])
    assert got == {"unit": EVERY, "api": []}


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("src/payments/**", "src/payments/a.py", True),
        ("src/payments/**", "src/payments/x/y/z.py", True),
        ("src/payments/**", "src/paymentsx/a.py", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/sub/a.py", False),
        ("**/*.sql", "db/migrations/1.sql", True),
        ("**/*.sql", "top.sql", True),
        ("src/?.py", "src/a.py", True),
        ("src/?.py", "src/ab.py", False),
        ("docs/", "docs/a/b.md", True),
        ("setup.cfg", "setup.cfg", True),
        ("setup.cfg", "a/setup.cfg", False),
        ("a+b/[x].py", "a+b/[x].py", True),
    ],
)
def test_globs(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches


@pytest.mark.parametrize(
    ("key", "prefix", "inside"),
    [
        ("tests/payments/test_a.py::t", "tests/payments", True),
        ("tests/payments_old/test_a.py::t", "tests/payments", False),
        ("tests/test_a.py::t[1]", "tests/test_a.py::t", True),
        ("tests/test_a.py::t2", "tests/test_a.py::t", False),
        ("tests/test_a.py::t", "tests/test_a.py", True),
        ("tests/x", "tests/", True),
    ],
)
def test_path_prefix_targets(key: str, prefix: str, inside: bool) -> None:
    assert under(key, prefix) is inside


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fastest:3", "unknown rule 'fastest:3'"),
        ("failed-in-last", "needs a value"),
        ("failed-in-last:0", "N must be a whole number from 1 to 100"),
        ("failed-in-last:x", "N must be a whole number"),
        ("slowest:-1", "N must be a whole number"),
        ("failure-rate-above:1.5", "x must be a number from 0"),
        ("failure-rate-above:nan", "x must be a number from 0"),
        ("flaky:yes", "flaky takes no value"),
        ("tag:a b", "a tag is"),
    ],
)
def test_bad_rules_are_named(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(text)
    assert message in str(caught.value) and text.split(":")[0] in str(caught.value)


def test_rules_parse_to_values() -> None:
    assert [
        str(r) for r in parse_rules(["failed-in-last:3", "failure-rate-above:0.25", "tag:x", "flaky"])
    ] == [
        "failed-in-last:3",
        "failure-rate-above:0.25",
        "tag:x",
        "flaky",
    ]
    assert parse_rule("slowest:10").value == 10


def test_changed_files_rule_needs_paths() -> None:
    with pytest.raises(RuleError, match="changed_files"):
        choose(req("changed-files"), [CASE])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "file_map is an object"),
        ({"/abs/**": ["tests"]}, "relative path pattern"),
        ({"src/**": []}, "a list of 1-100 targets"),
        ({"src/**": ["tag:a b"]}, "names no valid tag"),
        ({"src/**": ["../up"]}, "relative test path prefix"),
    ],
)
def test_bad_file_maps_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_file_map(value)


def test_a_good_file_map_is_kept() -> None:
    assert check_file_map({"src/**": ["tests/a", "tests/a", "tag:x"]}) == {"src/**": ["tests/a", "tag:x"]}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # two failures, one chosen: caught 1, missed 1; the unselected tests' 6 s of 10 s saved
        (
            [("a", "failed", 1.0, True), ("b", "error", 2.0, False), ("c", "passed", 3.0, True),
             ("d", "passed", 4.0, False)],
            {"tests": 4, "selected": 2, "failures": 2, "caught": 1, "missed": 1, "missed_tests": ["b"],
             "time_total_s": 10.0, "time_saved_s": 6.0, "time_saved_fraction": 0.6, "caught_fraction": 0.5},
        ),
        # no failures; skipped is not a failure; unknown durations count as 0
        (
            [("a", "skipped", None, False), ("b", "passed", 2.0, True)],
            {"tests": 2, "selected": 1, "failures": 0, "caught": 0, "missed": 0, "missed_tests": [],
             "time_total_s": 2.0, "time_saved_s": 0.0, "time_saved_fraction": 0.0, "caught_fraction": None},
        ),
        (
            [],
            {"tests": 0, "failures": 0, "time_total_s": 0.0, "time_saved_fraction": None},
        ),
    ],
)  # fmt: skip
def test_observation_arithmetic(
    rows: list[tuple[str, str, float | None, bool]], expected: dict[str, object]
) -> None:
    report = observe([Observed(*row) for row in rows]).as_dict()
    assert {key: report[key] for key in expected} == expected


def test_stored_selection_is_bounded() -> None:
    many = CaseFacts(
        id="c",
        name="big",
        kind="pytest",
        tests=tuple(t(f"t.py::t{i}", recent=("failed",)) for i in range(500)),
    )
    request = req("failed-in-last:1")
    stored = choose(request, [many]).cases[0].stored(request)
    assert stored["counts"] == {"selected": 500, "total": 500}
    assert len(stored["tests"]) == 500 and len(stored["reasons"]) == 200 and stored["reasons_truncated"]
    assert stored["whole"] is True and stored["rules"] == ["failed-in-last:1"]


def test_an_execution_shows_a_bounded_selection() -> None:
    from api.execution_schemas import SELECTION_TESTS_SHOWN, shown_selection

    many = {"rules": ["all"], "tests": [f"t{i}" for i in range(SELECTION_TESTS_SHOWN + 5)]}
    shown = shown_selection(many)
    assert shown is not None and len(shown["tests"]) == SELECTION_TESTS_SHOWN and shown["tests_truncated"]
    assert shown_selection({"tests": ["a"]}) == {"tests": ["a"]} and shown_selection(None) is None
