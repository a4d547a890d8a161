"""`python -m anvil.cli …`: the `anvil` command without its script on PATH (anvil_argv uses it)."""

from anvil.cli.main import app

# Guarded: a multiprocessing child started by "spawn" (uvicorn --workers) imports this module again.
if __name__ == "__main__":
    app(prog_name="anvil")
