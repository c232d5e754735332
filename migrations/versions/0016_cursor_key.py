"""The key that signs the API's cursors: one random secret, made by PostgreSQL.

A cursor is the key of the last row a page returned; signed (HMAC-SHA256, see
``tally.domain.pagination.Cursors``), a client can continue a list but never make up a
key of its own (a forged, edited or truncated cursor is ``400 invalid_cursor``). The
secret is 32 bytes of two ``gen_random_uuid()`` (core since PostgreSQL 13, from the
server's strong random source: 244 random bits; pgcrypto's ``gen_random_bytes`` would need
an extension). One row; ``tally_reader`` (the API) and ``tally_writer`` (the CLI) only read
it (``privileges.WRITER_READ_ONLY``). Replacing it (as the owner) ends every cursor given
out before.

Revision ID: 0016
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE cursor_key (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    secret     bytea NOT NULL CHECK (length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO cursor_key (secret)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
"""

DOWNGRADE = """
DROP TABLE cursor_key;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
