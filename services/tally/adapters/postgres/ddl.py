"""Helpers the migrations share: running a SQL script, making tables append-only."""

from __future__ import annotations

from alembic import op


def statements(script: str) -> list[str]:
    """Split on semicolons outside dollar-quoted bodies (asyncpg runs one per call)."""
    parts, current = [], []
    for piece in script.split(";"):
        current.append(piece)
        if "".join(current).count("$$") % 2 == 0:
            statement = ";".join(current).strip()
            if statement:
                parts.append(statement)
            current = []
    return parts


def run_script(script: str) -> None:
    for statement in statements(script):
        op.execute(statement)


def refuse_changes(table: str) -> None:
    """Posted rows stay as they are: UPDATE, DELETE and TRUNCATE raise."""
    op.execute(
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION tally_refuse_change()"
    )
    refuse_truncate(table)


def refuse_truncate(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_change()"
    )
