"""The operators' files checked in (Grafana's dashboard, Prometheus's alert rules and scrape
configuration) name only metrics Tally really exposes, on the ports compose gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import tally.entrypoints.http.app
import tally.service_layer.consumer
import tally.service_layer.month_close  # noqa: F401  (their metrics, registered on import)
from tally.adapters.telemetry.metrics import CLOSE_PUSHED

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "services" / "observability"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
PROMETHEUS_OWN = {"up"}  # a scrape's own series
METRIC = re.compile(r"\b(tally_[a-z0-9_]+|up)\b")


def exposed() -> set[str]:
    """Every series name the process's registry can expose, and what the close pushes."""
    names = set(PROMETHEUS_OWN) | {f"tally_close_last_{name}" for name in CLOSE_PUSHED}
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "tally.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_dashboard_and_alert_query_names_a_metric_tally_exposes() -> None:
    known = exposed()
    queries = dashboard_queries() + rule_queries()
    assert len(queries) > 15
    for query in queries:
        named = set(METRIC.findall(query))
        assert named, f"no Tally metric in {query!r}"
        assert named <= known, f"{query!r} names {sorted(named - known)}, not exposed"


def test_the_dashboard_covers_what_operators_watch() -> None:
    queries = " ".join(dashboard_queries())
    for metric in (
        "tally_events_total",
        "tally_stream_lag",
        "tally_stream_oldest_pending_age_seconds",
        "tally_event_commit_latency_seconds_bucket",
        "tally_dead_letters",
        "tally_close_last_duration_seconds",
        "tally_http_request_duration_seconds_bucket",
        "tally_alerts_recorded_total",
    ):
        assert metric in queries
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "TallyConsumerLagGrowing",
        "TallyDeadLettersGrowing",
        "TallyConsumerDown",
        "TallyStreamIncident",
    } <= alerts


def test_prometheus_scrapes_the_ports_compose_exposes() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    scrape = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    consumer_port = compose["services"]["consumer"]["environment"]["TALLY_METRICS_PORT"]
    assert jobs["tally-consumer"]["dns_sd_configs"][0]["port"] == int(consumer_port)
    assert compose["services"]["consumer"]["environment"]["TALLY_METRICS_HOST"] == "0.0.0.0"
    assert "8000" in compose["services"]["api"]["command"]
    assert jobs["tally-api"]["static_configs"][0]["targets"] == ["api:8000"]
    for volume in (
        compose["services"]["prometheus"]["volumes"] + compose["services"]["grafana"]["volumes"]
    ):
        assert (ROOT / volume.split(":")[0]).exists(), volume
