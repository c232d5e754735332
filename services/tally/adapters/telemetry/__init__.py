"""What operators watch: Prometheus metrics, OpenTelemetry traces and structured logs.

Each signal is one module, and each costs nothing when nobody collects it: counters are
plain increments, spans are the OpenTelemetry API's no-op until an exporter is configured,
and the log format is chosen once at start-up.
"""
