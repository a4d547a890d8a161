"""`anvil execute`: run what selection rules pick from a case or a suite, or show it (--dry-run).

    anvil execute --suite nightly --rule failed-in-last:3 --rule flaky --dry-run
    anvil execute --case api --since origin/main          # the changed-files rule, from git
    anvil execute --suite nightly --rule flaky --observe  # run all, record what flaky would pick

A top-level command, so a plain function: anvil/cli/main.py registers it. Exit codes: 0 done (or,
with --wait, PASSED), 1 did not pass, 2 usage or API error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from anvil.cli.follow import follow_case, follow_suite
from anvil.cli.git import GitError, changed_since
from anvil.cli.http import Api, exit_on_api_error, make_api
from anvil.cli.lookup import resolve, resolve_case
from anvil.cli.options import DEFAULT_API_URL, ApiUrl, AsJson, Token
from anvil.cli.output import console
from anvil.cli.submit import Branch, Env, Revision, Wait, finish, source_options
from anvil.domain.enums import Priority

Rules = Annotated[
    list[str] | None,
    typer.Option("--rule", "-r", help="a selection rule (repeat: their union); see `anvil rules list`"),
]


def execute(
    case: Annotated[str | None, typer.Option("--case", help="test case id or name")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="test suite id or name")] = None,
    rule: Rules = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="drop what this rule matches")
    ] = None,
    changed_file: Annotated[
        list[str] | None,
        typer.Option("--changed-file", help="a changed path (repeat); implies --rule changed-files"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="changed files from `git diff --name-only REF...HEAD` here; implies changed-files"),
    ] = None,
    observe: Annotated[
        bool, typer.Option("--observe", help="run everything; record what the rules would have selected")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would run, and why; run nothing")
    ] = False,
    priority: Annotated[
        Priority | None, typer.Option(case_sensitive=False, show_default=False, help="queue priority")
    ] = None,
    revision: Revision = None,
    branch: Branch = None,
    env: Env = None,
    wait: Wait = False,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    token: Token = None,
) -> None:
    """Run the tests of a case or suite that selection rules pick, each with the reason it was picked."""
    if (case is None) == (suite is None):
        raise typer.BadParameter("give exactly one of --case and --suite", param_hint="--case/--suite")
    changed = list(changed_file or [])
    if since:
        try:
            changed += changed_since(since, Path.cwd())
        except GitError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    rules = list(rule or [])
    if changed and "changed-files" not in rules:
        rules.append("changed-files")
    if since and not changed:
        typer.echo(f"no files changed since {since}: the changed-files rule selects nothing", err=True)
        rules = [r for r in rules if r != "changed-files"]
        if not rules:
            raise typer.Exit(0)
    if not rules:
        raise typer.BadParameter(
            "give at least one --rule (or --changed-file / --since)", param_hint="--rule"
        )
    selection: dict[str, Any] = {"rules": rules, "exclude": list(exclude or []), "observe": observe}
    if changed:
        selection["changed_files"] = list(dict.fromkeys(changed))
    api = make_api(api_url, token)
    with exit_on_api_error():
        target = _target(api, case, suite)
        source = source_options(revision, branch, env)
        if dry_run:
            shown = api.call(
                "POST", "/api/v1/executions/select", body={**target, **source, "selection": selection}
            )
            if as_json:
                typer.echo(json.dumps(shown, indent=2))
            else:
                print_selection(shown)
            return
        body: dict[str, Any] = {**target, **source, "selection": selection}
        if priority is not None:
            body["priority"] = priority.value
        path = "/api/v1/executions/case" if case is not None else "/api/v1/executions/suite"
        execution = api.call("POST", path, body=body)
        if not wait:
            typer.echo(execution["id"] if not as_json else json.dumps(execution, indent=2))
            return
        out = console()
        chosen = execution.get("selection") or {}
        out.print(f"selection: {escape(_counts(chosen))}")
        follow = follow_case if case is not None else follow_suite
        final = follow(api, execution, out=out)
    finish(api, final, None)


def _target(api: Api, case: str | None, suite: str | None) -> dict[str, str]:
    if case is not None:
        return {"test_case_id": resolve_case(api, case)}
    assert suite is not None
    return {"test_suite_id": resolve(api, "/api/v1/test-suites", "test suite", suite)}


def _counts(selection: dict[str, Any]) -> str:
    counts = selection.get("counts") or {}
    text = f"{counts.get('selected', '?')} of {counts.get('total', '?')} known tests"
    if "cases_selected" in counts:
        text += f" in {counts['cases_selected']} of {counts['cases_total']} cases"
    if selection.get("whole"):
        text += " (the whole case: " + str(selection.get("reason")) + ")"
    return text + (" — observation: everything runs" if selection.get("observe") else "")


def print_selection(shown: dict[str, Any]) -> None:
    """The dry run: one row per test, selected or not, the rule and the reason."""
    out = console()
    table = Table("case", "test", "selected", "rule", "reason", box=None, pad_edge=False)
    for case in shown["cases"]:
        if not case["tests"]:
            mark = "[green]whole[/]" if case["selected"] else "[dim]no[/]"
            table.add_row(
                escape(case["name"]),
                "[dim](no known tests)[/]",
                mark,
                case["rule"] or "",
                escape(case["reason"] or ""),
            )
        for test in case["tests"]:
            table.add_row(
                escape(case["name"]),
                escape(test["key"]),
                "[green]yes[/]" if test["selected"] else "[dim]no[/]",
                escape(test["rule"] or ""),
                escape(test["reason"]),
            )
    out.print(table)
    for note in shown.get("notes") or []:
        out.print(f"[yellow]note:[/] {escape(note)}")
    counts = shown["counts"]
    whole = [c["name"] for c in shown["cases"] if c["whole"]]
    line = (
        f"{counts['selected']} of {counts['total']} known tests selected, "
        f"in {counts['cases_selected']} of {counts['cases_total']} cases"
    )
    if whole:
        line += f"; run whole (new tests included): {', '.join(whole)}"
    out.print(escape(line))
