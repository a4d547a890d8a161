"""The overlap detector a fault test's step runs (copied into the test workspace; not a pytest module).

It trusts nothing Anvil records. It connects to the test's PostgreSQL itself and takes a session
advisory lock keyed on its execution id: two attempts of one execution alive at the same time cannot
both hold it, so the second one records a row in ``collisions`` and exits 3. The lock lives as long
as this process's connection, so a killed attempt releases it the moment it dies.

Usage: python detector.py SECONDS  (env: FAULT_DETECTOR_URL, ANVIL_EXECUTION_ID, ANVIL_ATTEMPT)
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

CONNECT_FOR_S = 30.0  # PostgreSQL may be restarting (fault 4): keep trying for a while


def connect(url: str) -> psycopg.Connection:
    deadline = time.monotonic() + CONNECT_FOR_S
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    seconds = float(sys.argv[1])
    url = os.environ["FAULT_DETECTOR_URL"]
    execution_id = os.environ["ANVIL_EXECUTION_ID"]
    attempt = int(os.environ.get("ANVIL_ATTEMPT", "0"))
    conn = connect(url)
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (execution_id,)).fetchone()
    held = bool(got and got[0])
    conn.execute(
        "INSERT INTO detector_runs (execution_id, attempt, pid, got_lock) VALUES (%s, %s, %s, %s)",
        (execution_id, attempt, os.getpid(), held),
    )
    if not held:
        conn.execute(
            "INSERT INTO collisions (execution_id, attempt, pid) VALUES (%s, %s, %s)",
            (execution_id, attempt, os.getpid()),
        )
        print(f"COLLISION: another attempt of {execution_id} holds the lock", flush=True)
        return 3
    time.sleep(seconds)
    # Still holding it? If the connection died (PostgreSQL restarted), the lock went with it and this
    # run cannot vouch for its own exclusivity: say so, and fail the step.
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        print("LOCK LOST: the detector's connection died while it slept", flush=True)
        return 4
    print(f"held the lock of {execution_id} attempt {attempt} for {seconds}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
