"""OpenTelemetry traces: a span per batch (read, rate, commit, ack), per close, per alert
delivery and per API request, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``…_TRACES_ENDPOINT``) is set. Unset, the API's tracer is a no-op: a span costs a
function call, and no event's trace context is even read.

A batch carries many events, each possibly with its producer's ``traceparent`` (a
CloudEvents extension): the batch span *links* to them rather than choosing one parent.
Attributes follow OpenTelemetry's messaging conventions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the SDK is imported only when tracing is turned on (start-up time)
    from opentelemetry.sdk.trace.export import SpanExporter

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
MAX_LINKS = 128  # the SDK's default limit of links per span
_PROPAGATOR = TraceContextTextMapPropagator()

tracer = trace.get_tracer("tally")


def enabled() -> bool:
    """Spans are recorded and exported in this process."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def configure(service_name: str, exporter: SpanExporter | None = None) -> bool:
    """Export spans (to ``exporter``, or over OTLP when an endpoint is configured); False
    when neither is given, leaving tracing off. The first call of a process decides."""
    if enabled():
        return True
    if exporter is None:
        if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def messaging(stream: str, group: str, operation: str, count: int) -> dict[str, str | int]:
    """The messaging attributes of a span over ``count`` entries of ``stream``."""
    return {
        "messaging.system": "redis",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": group,
        "messaging.operation.name": operation,
        "messaging.batch.message_count": count,
    }


def producer_context(traceparent: str) -> SpanContext | None:
    """The producer's span an event names in its ``traceparent``; None if it is malformed."""
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    span = trace.get_current_span(context).get_span_context()
    return span if span.is_valid else None


def link_producers(span: Span, traceparents: Iterable[str | None]) -> None:
    """Link ``span`` to the producers' spans (the first ``MAX_LINKS`` distinct ones)."""
    if not span.is_recording():
        return
    seen: set[str] = set()
    for traceparent in traceparents:
        if traceparent is None or traceparent in seen:
            continue
        seen.add(traceparent)
        context = producer_context(traceparent)
        if context is not None:
            span.add_link(context)
        if len(seen) >= MAX_LINKS:
            return
