"""The monitoring files under deploy/ against the metrics Anvil exposes (promtool is not at hand):
the YAML parses, every ``anvil_…`` name an alert, the dashboard or the scrape config uses is one a
process exposes, and a scheduler tick's report moves the beat's counters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from anvil.domain.enums import Priority
from api.db_metrics import DatabaseCollector, Reading
from db.queues import QueueDepth
from scheduler.tick import TickReport
from scheduler.tick_metrics import record_tick

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\banvil_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exposed_names() -> set[str]:
    """Every sample name a scrape can hold: the processes' metrics and the API's database gauges."""
    database = DatabaseCollector()
    now = datetime.now(UTC)
    database.reading = Reading(
        depths=[QueueDepth(Priority.HIGH, 1, now, 0.0)], slots={"w": 2}, busy={"w": 1}, up=True
    )
    families = [f for f in REGISTRY.collect() if f.name.startswith("anvil_")] + list(database.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def used_names(text: str) -> set[str]:
    return set(NAME.findall(text))


def test_the_alert_rules_parse_and_use_only_exposed_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"AnvilQueueWaitTooLong", "AnvilNoWorkerAlive", "AnvilTickNotRunning", "AnvilAbortedRate"} <= set(
        alerts
    )
    for name, rule in alerts.items():
        assert rule["expr"].strip() and rule["annotations"]["summary"], name
        unknown = used_names(rule["expr"]) - exposed_names()
        assert not unknown, f"{name} uses metrics nothing exposes: {sorted(unknown)}"


def test_the_dashboard_uses_only_exposed_metrics_and_covers_the_operators_questions() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "anvil-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = used_names("\n".join(exprs))
    assert not used - exposed_names(), sorted(used - exposed_names())
    for needed in (
        "anvil_http_requests_total",
        "anvil_http_request_duration_seconds_bucket",
        "anvil_executions_finished_total",
        "anvil_queue_depth",
        "anvil_execution_queue_wait_seconds_bucket",
        "anvil_worker_busy_slots",
        "anvil_worker_slots",
        "anvil_tick_duration_seconds_bucket",
    ):
        assert needed in used, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_api_workers_and_beat_and_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        "anvil-api",
        "anvil-worker",
        "anvil-beat",
    ]
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    assert compose["worker"]["command"][-2:] == ["--metrics-port", "9101"]
    assert compose["beat"]["command"][-2:] == ["--metrics-port", "9102"]
    assert compose["prometheus"]["profiles"] == compose["grafana"]["profiles"] == ["monitoring"]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("leader", [True, False])
def test_a_ticks_report_moves_the_beats_counters_only_when_it_acted(leader: bool) -> None:
    names: list[tuple[str, dict[str, Any]]] = [
        ("anvil_lease_recoveries_total", {"outcome": "requeued"}),
        ("anvil_lease_recoveries_total", {"outcome": "lost"}),
        ("anvil_republished_total", {}),
        ("anvil_schedules_fired_total", {}),
        ("anvil_scheduled_promoted_total", {}),
        ("anvil_tick_duration_seconds_count", {"leader": str(leader).lower()}),
    ]
    before = [_sample(name, **labels) for name, labels in names]
    report = TickReport(leader=leader, requeued=2, lost=1, republished=3, fired=4, promoted=5)
    record_tick(report, 0.02)
    moved = [_sample(name, **labels) - b for (name, labels), b in zip(names, before, strict=True)]
    assert moved == ([2, 1, 3, 4, 5, 1] if leader else [0, 0, 0, 0, 0, 1])


def test_a_failed_tick_is_counted() -> None:
    before = _sample("anvil_tick_failures_total")
    record_tick(None, 3.0)
    assert _sample("anvil_tick_failures_total") - before == 1
