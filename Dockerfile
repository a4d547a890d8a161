# One image for every Anvil process: api (default command), worker, beat, migrate and Flower.
#   docker build -t anvil .
#   docker run --rm -p 8000:8000 -v "$PWD/secrets:/run/secrets:ro" \
#       -e ANVIL_DATABASE_URL_FILE=/run/secrets/anvil_database_url \
#       -e ANVIL_REDIS_URL_FILE=/run/secrets/anvil_redis_url \
#       -e ANVIL_SECRET_KEY_FILE=/run/secrets/anvil_secret_key anvil
# Secrets come from files (ANVIL_<NAME>_FILE), not from -e ANVIL_<NAME>=...: environment variables
# show in `docker inspect` and are inherited by every child process. docker-compose.yml says how to
# create the files, and how the worker container must run (root, with what bubblewrap needs).
# Tests run as child processes of the worker, sandboxed by bubblewrap as the user anvil-sandbox, so
# the tools they call must be in this image: extend it (FROM anvil, then apt-get/pip install your
# toolchain) for real test suites.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANVIL_WORKSPACE_ROOT=/workspaces \
    ANVIL_API_HOST=0.0.0.0

# tini as PID 1: reaps the orphans a killed test process group leaves behind, forwards SIGTERM
# to the process (Celery's warm shutdown). bubblewrap builds each test's sandbox; util-linux has
# the setpriv and prlimit it runs the test with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*

# A plain install from a copy of the sources, which is then removed: the image runs what the wheel
# holds (the migrations too, as the package anvil_migrations), nothing from a checkout.
COPY pyproject.toml README.md /tmp/anvil-src/
COPY alembic /tmp/anvil-src/alembic
COPY anvil /tmp/anvil-src/anvil
COPY api /tmp/anvil-src/api
COPY db /tmp/anvil-src/db
COPY scheduler /tmp/anvil-src/scheduler
COPY workers /tmp/anvil-src/workers
RUN pip install /tmp/anvil-src && rm -rf /tmp/anvil-src && anvil --help >/dev/null
# pytest's rewritten bytecode of the installed plugins, cached in the image: sandboxed test
# processes write none, and would otherwise rewrite them at every start (workers/plugin_bytecode.py).
RUN python -m workers.plugin_bytecode
WORKDIR /app

# Two unprivileged users. anvil runs the API, beat, Flower and migrations (the image's default
# user). anvil-sandbox runs the tests: no home, no login shell, nothing of its own; the worker runs
# as root only to build each test's sandbox (docker-compose.yml) and switches the test to it. The
# installation (/app) belongs to root: neither user can change it. /workspaces holds the
# directories test cases name in their "workspace" field; it starts with the examples (demo,
# pytest-demo, bdd-demo), and a fresh named volume mounted there starts as a copy of them.
RUN useradd --create-home --uid 10001 --user-group anvil \
    && groupadd --gid 10002 anvil-sandbox \
    && useradd --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin anvil-sandbox \
    && mkdir /workspaces && chown anvil:anvil /workspaces
COPY --chown=anvil:anvil examples/workspaces/ /workspaces/
USER anvil
VOLUME ["/workspaces"]

EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["anvil", "api", "--host", "0.0.0.0"]
