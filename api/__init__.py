"""The FastAPI service: validation, auth, submit, query."""
