"""Prometheus's scrape of ``tally serve``: public like /v1/health (request counts and
durations by route template, never a customer's data); keep it off a customer-facing proxy.

With several workers each process counts its own requests: ``tally serve`` then gives them
a shared ``PROMETHEUS_MULTIPROC_DIR`` and a scrape sums them (prometheus-client's
multiprocess mode)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tally.entrypoints.http.auth import scoped

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics"}},
    **scoped(None),
)
async def metrics() -> Response:
    """The server's metrics in Prometheus's text format (`tally_http_request_duration_seconds`
    by method, route template and status)."""
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
