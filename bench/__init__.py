"""Benchmark of Anvil against raw Celery (run bench/bench.py)."""
