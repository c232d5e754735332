"""Prometheus metrics, in the process's default registry, exposed at ``/metrics``.

Names and units follow Prometheus's conventions (``tally_…_total`` counters, ``_seconds``,
``_bytes``). Every label has a bounded set of values (an outcome, a dead-letter code, a
stream key, a route template, a status): never an organization, a client or an event id,
which would make a series per customer.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import push_to_gateway, start_http_server
from prometheus_client.registry import Collector

EVENTS = Counter(
    "tally_events",
    "Usage stream entries the consumer committed, by what became of them (code: the "
    "dead-letter code of a rejected one)",
    ["outcome", "code"],
)
BATCH_ENTRIES = Histogram(
    "tally_batch_entries",
    "Stream entries per committed batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
BATCH_COMMIT = Histogram(
    "tally_batch_commit_duration_seconds",
    "Time to commit a batch in PostgreSQL and acknowledge it in Redis",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CLAIMED = Counter(
    "tally_stream_claimed_entries",
    "Entries another consumer left pending that this one claimed (XAUTOCLAIM)",
    ["stream"],
)
DEAD_LETTERS = Gauge(
    "tally_dead_letters",
    "Dead letters kept in PostgreSQL, by code and state (open: not yet replayed)",
    ["code", "state"],
)
CLOSE_DURATION = Histogram(
    "tally_close_duration_seconds",
    "Time to close a billing period (every organization's invoice)",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
)
INVOICES_ISSUED = Counter("tally_invoices_issued", "Invoices issued by the month close")
ALERTS_RECORDED = Counter(
    "tally_alerts_recorded", "Threshold alerts recorded (80 % / 100 % of an allocation)"
)
WEBHOOK_DELIVERIES = Counter(
    "tally_webhook_deliveries",
    "POSTs of alerts to webhooks, by result (delivered, failed: retried later or given up)",
    ["result"],
)
HTTP_REQUEST_DURATION = Histogram(
    "tally_http_request_duration_seconds",
    "Time to answer an HTTP request of `tally serve`, by route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# The stream's figures, as `tally stream status` reports them: the gauge's name after
# ``tally_stream_``, and its help.
STREAM_GAUGES = {
    "length": "Entries in the stream now",
    "entries_added": "Entries ever added to the stream (Redis 7)",
    "pending": "Entries delivered to the group and not yet acknowledged",
    "lag": "Entries not yet delivered to the group (Redis 7)",
    "oldest_pending_age_seconds": "Age of the oldest entry delivered and not yet acknowledged",
    "lost_before_read": "Entries removed from the stream before the group read them",
    "incidents": "Incidents of entries removed before they were read",
    "deleted_while_pending": "Entries deleted while pending (kept as dead letters)",
    "trimmed_entries": "Entries Tally trimmed after they were acknowledged and stored",
    "drained": "1 when the group has nothing left",
}


class StreamGauges:
    """One series per stream (shard) and group, set from a `tally stream status` report."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.gauges = {
            name: Gauge(f"tally_stream_{name}", help_text, ["stream", "group"], registry=registry)
            for name, help_text in STREAM_GAUGES.items()
        }

    def set(self, report: Mapping[str, Any], now_ms: int | None = None) -> None:
        values = {name: report.get(name) or 0 for name in self.gauges}
        values["drained"] = 1 if report["drained"] else 0
        oldest = report.get("oldest_pending_id")
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        values["oldest_pending_age_seconds"] = (
            max(now_ms - entry_ms(oldest), 0) / 1000 if oldest else 0
        )
        where = {"stream": report["stream"], "group": report["group"]}
        for name, gauge in self.gauges.items():
            gauge.labels(**where).set(values[name])


def entry_ms(stream_id: str) -> int:
    """When Redis added an entry: the milliseconds part of its id."""
    return int(stream_id.partition("-")[0])


class EventCommitLatency(Collector):
    """``tally_event_commit_latency_seconds``: from the XADD (the time in the entry's id) to
    the commit of its batch. Observed a batch at a time: the entries' times sorted once, each
    bucket's count is a bisection, so a batch of 10,000 costs no per-entry observation."""

    NAME = "tally_event_commit_latency_seconds"
    BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the exposition runs in the HTTP server's thread
        self._cumulative = [0] * len(self.BUCKETS_MS)
        self._count = 0
        self._sum_ms = 0

    def observe_batch(self, stream_ids: Sequence[str], committed_ms: int) -> None:
        added = sorted(entry_ms(sid) for sid in stream_ids)
        n = len(added)
        counts = [n - bisect_left(added, committed_ms - bound) for bound in self.BUCKETS_MS]
        with self._lock:
            self._cumulative = [
                old + new for old, new in zip(self._cumulative, counts, strict=True)
            ]
            self._count += n
            self._sum_ms += n * committed_ms - sum(added)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative, count, sum_ms = list(self._cumulative), self._count, self._sum_ms
        buckets = [(str(ms / 1000), c) for ms, c in zip(self.BUCKETS_MS, cumulative, strict=True)]
        yield HistogramMetricFamily(
            self.NAME,
            "Time from an event's XADD (its entry id) to the commit of its batch",
            buckets=[*buckets, ("+Inf", count)],
            sum_value=sum_ms / 1000,
        )


EVENT_COMMIT_LATENCY = EventCommitLatency()
REGISTRY.register(EVENT_COMMIT_LATENCY)
STREAM_STATUS = StreamGauges()  # set by a consumer exposing its metrics


def batch_committed(
    stream_ids: Sequence[str],
    outcomes: Mapping[str, int],
    rejected_codes: Mapping[str, int],
    commit_seconds: float,
) -> None:
    """A batch committed and acknowledged: its outcomes, size, commit time and latency."""
    for outcome, n in outcomes.items():
        if outcome != "rejected":
            EVENTS.labels(outcome.replace(" ", "_"), "").inc(n)
    for code, n in rejected_codes.items():
        EVENTS.labels("rejected", code).inc(n)
    BATCH_ENTRIES.observe(len(stream_ids))
    BATCH_COMMIT.observe(commit_seconds)
    EVENT_COMMIT_LATENCY.observe_batch(stream_ids, int(time.time() * 1000))


def dead_letters_kept(counts: Iterable[tuple[str, str, int]]) -> None:
    """The dead-letter store's size now: (code, state, count) rows."""
    DEAD_LETTERS.clear()
    for code, state, n in counts:
        DEAD_LETTERS.labels(code, state).set(n)


def serve(host: str, port: int) -> None:
    """Expose the default registry at ``http://host:port/metrics`` from a daemon thread."""
    start_http_server(port, addr=host)


# What a `tally close` that exits pushes (gauges of its last run: a pushed counter would
# restart at each run): the name after ``tally_close_last_``, and its help.
CLOSE_PUSHED = {
    "success_timestamp_seconds": "When the last close ended (Unix time)",
    "failure_timestamp_seconds": "When the last close failed (Unix time)",
    "duration_seconds": "How long the last close took",
    "invoices_issued": "Invoices the last close issued",
}


def push_close(gateway: str, seconds: float, issued: int | None) -> None:
    """The last close's figures to a Pushgateway (job ``tally-close``). ``issued`` None: it
    failed, and only the failure's time is pushed (the last success's figures stay)."""
    registry = CollectorRegistry()
    values = (
        {"failure_timestamp_seconds": time.time()}
        if issued is None
        else {
            "success_timestamp_seconds": time.time(),
            "duration_seconds": seconds,
            "invoices_issued": issued,
        }
    )
    for name, value in values.items():
        Gauge(f"tally_close_last_{name}", CLOSE_PUSHED[name], registry=registry).set(value)
    push_to_gateway(gateway, job="tally-close", registry=registry)
