# One image for every Anvil process: api (default command), worker, beat, migrate and Flower.
#   docker build -t anvil .
#   docker run --rm -p 8000:8000 -e ANVIL_DATABASE_URL=... -e ANVIL_REDIS_URL=... -e ANVIL_SECRET_KEY=... anvil
# Tests run as child processes of the worker, so the tools they call must be in this image:
# extend it (FROM anvil, then apt-get/pip install your toolchain) for real test suites.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANVIL_WORKSPACE_ROOT=/workspaces \
    ANVIL_API_HOST=0.0.0.0

# tini as PID 1: reaps the orphans a killed test process group leaves behind, forwards SIGTERM
# to the process (Celery's warm shutdown).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY anvil ./anvil
COPY api ./api
COPY db ./db
COPY scheduler ./scheduler
COPY workers ./workers
# Editable install: `anvil db upgrade` reads alembic.ini and alembic/ next to the package sources.
RUN pip install -e . && anvil --help >/dev/null

# Unprivileged user; tests run as this user too. /workspaces holds the directories test cases
# name in their "workspace" field; it starts with the examples (demo, pytest-demo, bdd-demo), and
# a fresh named volume mounted there starts as a copy of them.
RUN useradd --create-home --uid 10001 --user-group anvil \
    && mkdir /workspaces && chown anvil:anvil /workspaces
COPY --chown=anvil:anvil examples/workspaces/ /workspaces/
USER anvil
VOLUME ["/workspaces"]

EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["anvil", "api", "--host", "0.0.0.0"]
