"""``tally serve``: the read-only HTTP API and the pages."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated, Any

import typer

from tally.entrypoints.cli.context import settings_and_urls

WORKER_HEALTHCHECK_S = 60


def serve(
    host: Annotated[str | None, typer.Option(help="Address (TALLY_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TALLY_API_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (TALLY_API_WORKERS).")
    ] = None,
) -> None:
    """Run the read-only HTTP API; its database connection acts as tally_reader."""
    import uvicorn  # only for this command: every other one starts faster

    settings, _ = settings_and_urls()  # start the embedded servers once, before the workers
    workers = workers or settings.api_workers
    counted_in = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # each worker counts its own requests in files here; /metrics sums them
        counted_in = tempfile.mkdtemp(prefix="tally-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = counted_in
    try:
        uvicorn.run(
            "tally.entrypoints.http.app:create_app",
            factory=True,
            host=host or settings.api_host,
            port=port or settings.api_port,
            workers=workers,
            access_log=False,  # tally.api logs every request with its key id
            proxy_headers=False,  # the app believes only TALLY_TRUSTED_PROXIES
            log_config=_log_config(settings.log_format),  # applied in every worker process
            # a spawned worker imports the whole CLI before it answers the supervisor's ping:
            # on a busy host that takes more than uvicorn's 5 s, and it would be killed forever
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        )
    finally:
        if counted_in is not None:  # the workers' counts end with the server
            shutil.rmtree(counted_in, ignore_errors=True)


def _log_config(log_format: str) -> dict[str, Any]:
    """uvicorn's logging, plus tally.api's one line a request (with a timestamp) on stderr;
    with ``json``, every line a JSON object."""
    from uvicorn.config import LOGGING_CONFIG

    if log_format == "json":
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "tally.adapters.telemetry.logs.JsonLines"}},
            "handlers": {
                "json": {
                    "formatter": "json",
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["json"], "level": "INFO"},
            "loggers": {
                name: {"handlers": [], "level": "INFO", "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "tally.api")
            },
        }
    return {
        **LOGGING_CONFIG,
        "formatters": {
            **LOGGING_CONFIG["formatters"],
            "requests": {
                "()": "tally.adapters.telemetry.logs.RedactingText",
                "fmt": "%(asctime)s %(name)s %(message)s",
            },
        },
        "handlers": {
            **LOGGING_CONFIG["handlers"],
            "requests": {
                "formatter": "requests",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "tally.api": {"handlers": ["requests"], "level": "INFO", "propagate": False},
        },
    }


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
