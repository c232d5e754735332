"""A seal's signature waits for a seal key being published: no signature by a retired key.

0019 checked a signature against the key valid at its ``signed_at``, reading the keys the
signing transaction could see. A key being published (``tally seal keygen --rotate``) is
valid from its INSERT, before it commits: a signature by the previous key, made between
that INSERT and the commit, saw the previous key still current and passed, yet its
``signed_at`` falls in the new key's validity. Both now take the same transaction lock:
a signature waits for a key's publication to end, then sees the new key and is refused
(``tally seal sign`` with the new key signs it).

The invariant kept here: every stored signature is by the key valid at its ``signed_at``.

Revision ID: 0022
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

KEY_LOCK = "7461234019"  # 0019's lock: one new key at a time

BODY = """
CREATE OR REPLACE FUNCTION tally_seal_signed_by_current_key() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE current text;
BEGIN
    {wait}NEW.signed_at := clock_timestamp();  -- the database's clock: no backdated signature
    SELECT key_id INTO current FROM seal_key
     WHERE valid_from <= NEW.signed_at ORDER BY valid_from DESC LIMIT 1;
    IF current IS DISTINCT FROM NEW.key_id THEN
        RAISE EXCEPTION 'seal_signature: key % is not the key valid at % (that is %)',
            NEW.key_id, NEW.signed_at, coalesce(current, 'none') USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""
WAIT = f"PERFORM pg_advisory_xact_lock({KEY_LOCK});  -- a key being published commits first\n    "


def upgrade() -> None:
    run_script(BODY.format(wait=WAIT))


def downgrade() -> None:
    run_script(BODY.format(wait=""))
