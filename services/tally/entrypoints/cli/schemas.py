"""``tally schemas export``: the wire contract's JSON Schemas and the API's OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tally.domain.events import json_schemas
from tally.entrypoints.cli.rendering import (
    console,
    fail,
)

schemas_app = typer.Typer(
    help="The wire contract's JSON Schemas and the API's OpenAPI.", no_args_is_help=True
)


SCHEMAS_DIR = Path("schemas")


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = SCHEMAS_DIR,
    check: Annotated[bool, typer.Option(help="Only check the folder is current.")] = False,
) -> None:
    """Write one JSON Schema per event type and the HTTP API's OpenAPI document
    (``--check``: fail when the folder is stale)."""
    from tally.entrypoints.http.app import openapi_document  # FastAPI: only when needed

    stale = []
    for name, schema in {**json_schemas(), "openapi.json": openapi_document()}.items():
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
