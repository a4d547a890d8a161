"""The `anvil` command: the top layer, imported by nobody (only run, via main.py).

main.py assembles the root app: the top-level commands (servers, dev, executions) and one group
per module (database, cases, submit, manual, schedules, suites, users, tokens, secrets), each with
its own ``typer.Typer()``. Command modules import none of each other, only the helpers below them:
http (the API client), options, output, lookup, sse and follow. `anvil dev` runs standalone.py on
bootstrap (broker, keys, admin), supervisor (the child processes) and demo (the examples).
"""
