"""``tally schemas export``: the wire contract's JSON Schemas, the API's OpenAPI and the
streams' AsyncAPI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tally.domain.events import json_schemas
from tally.entrypoints.cli.rendering import (
    console,
    fail,
)

schemas_app = typer.Typer(
    help="The wire contract's JSON Schemas, the API's OpenAPI and the streams' AsyncAPI.",
    no_args_is_help=True,
)


SCHEMAS_DIR = Path("schemas")


def documents() -> dict[str, dict[str, Any]]:
    """What ``schemas/`` holds, file name → document."""
    # FastAPI and FastStream: only when needed
    from tally.adapters.asyncapi import asyncapi_document
    from tally.entrypoints.http.app import openapi_document

    return {
        **json_schemas(),
        "openapi.json": openapi_document(),
        "asyncapi.json": asyncapi_document(),
    }


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = SCHEMAS_DIR,
    check: Annotated[bool, typer.Option(help="Only check the folder is current.")] = False,
) -> None:
    """Write one JSON Schema per event type, the HTTP API's OpenAPI document and the
    streams' AsyncAPI document (``--check``: fail when the folder is stale)."""
    stale = []
    for name, schema in documents().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = out / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    if stale:
        raise fail(f"stale schemas: {', '.join(stale)}; run `tally schemas export`")


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
