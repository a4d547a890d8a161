"""The API under concurrency with a small connection pool: no request waits on another's connection.

A real `anvil api` runs with a pool of 3 connections. Against it, at the same time: more open
event streams than the pool holds (idle: their execution waits for a worker that never comes),
clients reading executions in a loop, and wrong logins (each costs a password hash). Every read
must succeed: requests queue for their turn at the database without holding a thread or a
connection, streams hold a connection only while they read new events, and password checks run
a few at a time on threads of their own. Before, a request held its connection across its waits
for a thread while threads waited for connections, and the same load answered 503 (QueuePool
limit of size 5 overflow 10 reached) to 45 of 100 reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.conftest import StackFactory

POOL = 3
STREAMS = 3 * POOL + 12  # many more than the pool holds
READERS = 60
LOGINS = 20
LOAD_S = 8.0


async def _load(api_url: str, token: str, execution_id: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(90.0)  # a loaded CI machine: slow answers are no failure, none is
    reads: Counter[int] = Counter()
    logins: Counter[int] = Counter()
    streams_open: list[bool] = []
    stop = asyncio.Event()

    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=timeout) as client:

        async def stream() -> None:
            path = f"/api/v1/executions/{execution_id}/events"
            async with client.stream("GET", path, headers=auth) as response:
                streams_open.append(response.status_code == 200)
                if response.status_code != 200:
                    return
                chunks = response.aiter_bytes()
                await anext(chunks)  # the "retry:" preamble: the stream is being served
                await stop.wait()  # then stays open, idle, until the load ends

        async def reader(n: int) -> None:
            paths = ["/api/v1/executions?limit=5", f"/api/v1/executions/{execution_id}",
                     f"/api/v1/executions/{execution_id}/steps"]
            i = n
            while not stop.is_set():
                response = await client.get(paths[i % len(paths)], headers=auth)
                reads[response.status_code] += 1
                i += 1

        async def wrong_login(n: int) -> None:
            while not stop.is_set():
                form = {"username": f"nobody-{n}", "password": "not-the-password"}
                response = await client.post("/api/v1/auth/token", data=form)
                logins[response.status_code] += 1

        streams = [asyncio.create_task(stream()) for _ in range(STREAMS)]
        # The streams first, so they all hold whatever a stream holds while the reads run.
        deadline = time.monotonic() + 20
        while len(streams_open) < STREAMS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        others = [asyncio.create_task(reader(n)) for n in range(READERS)]
        others += [asyncio.create_task(wrong_login(n)) for n in range(LOGINS)]
        await asyncio.sleep(LOAD_S)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*others, *streams), timeout=120)
    return {"reads": reads, "logins": logins, "streams": streams_open}


def test_small_pool_serves_streams_reads_and_wrong_logins_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(
        workers=0,
        beat=False,
        env={"ANVIL_DB_POOL_SIZE": str(POOL), "ANVIL_DB_MAX_OVERFLOW": "0", "ANVIL_DB_POOL_TIMEOUT_S": "20"},
    )
    case = stack.create_case([{"name": "never runs", "run": ["true"]}])
    execution = stack.submit(case["id"])  # no worker: it stays QUEUED and its streams stay open
    token = stack.client.headers["Authorization"].removeprefix("Bearer ")

    got = asyncio.run(_load(stack.api_url, token, execution["id"]))

    assert got["streams"] == [True] * STREAMS
    assert set(got["reads"]) == {200}, got["reads"]
    assert sum(got["reads"].values()) >= READERS  # every reader got through at least once
    # 401 (wrong password), or 429 once a client is locked out; never a 5xx.
    assert set(got["logins"]) <= {401, 429}, got["logins"]
    assert stack.get(execution["id"])["status"] == "QUEUED"
