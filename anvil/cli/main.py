"""The `anvil` command, assembled: top-level commands, then one group per module.

Imported by nobody: pyproject's [project.scripts] and `python -m anvil.cli` (__main__.py) run it.
`anvil --help` lists the commands in the order they are added here.
"""

from __future__ import annotations

import typer

from anvil.cli import (
    cases,
    database,
    dev,
    execute,
    executions,
    history,
    imports,
    manual,
    rules,
    schedules,
    secrets,
    servers,
    stats,
    submit,
    suites,
    tests,
    tokens,
    users,
    webhooks,
    workers,
)

app = typer.Typer(help="Anvil: distributed test execution.", no_args_is_help=True, add_completion=False)

for command in (
    servers.api,
    servers.worker,
    servers.beat,
    dev.dev,
    executions.status,
    executions.cancel,
    executions.retry,
    execute.execute,
    workers.workers,
):
    app.command()(command)

app.add_typer(database.app, name="db")
app.add_typer(cases.app, name="cases")
app.add_typer(submit.app, name="submit")
app.add_typer(manual.app, name="manual")
app.add_typer(schedules.app, name="schedules")
app.add_typer(suites.app, name="suites")
app.add_typer(users.app, name="users")
app.add_typer(tokens.app, name="tokens")
app.add_typer(secrets.app, name="secrets")
app.add_typer(imports.app, name="import")
app.add_typer(tests.app, name="tests")
app.add_typer(rules.app, name="rules")
app.add_typer(history.app, name="history")
app.add_typer(stats.app, name="stats")
app.add_typer(webhooks.app, name="webhooks")
