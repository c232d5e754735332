"""Signed seals: the Ed25519 public keys that sign month seals, and each seal's signature.

The invariants kept here:
- ``seal_key`` holds public keys only (32 raw bytes; the private key never reaches the
  database): a key's id is the first 16 hex digits of the SHA-256 of its public key, each
  key is valid from its ``valid_from`` until the next key's (a key is retired by making the
  next one, so the table is append-only: no row ever changes), and each key's
  ``valid_from`` (the database's clock, whatever the INSERT says) is later than every
  earlier key's;
- ``seal_signature`` holds one signature (64 bytes) per seal, made by the key valid at the
  signing time (``signed_at``, the database's clock): a retired key signs nothing more;
- both are records: UPDATE, DELETE and TRUNCATE are refused. The reader may read both (the
  public keys are published at ``/.well-known/tally-seal-keys.json``).

Revision ID: 0019
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE seal_key (
    key_id     text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    algorithm  text NOT NULL DEFAULT 'Ed25519' CHECK (algorithm = 'Ed25519'),
    public_key bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    valid_from timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (key_id = left(encode(sha256(public_key), 'hex'), 16))
);

CREATE TABLE seal_signature (
    period    text NOT NULL,
    sequence  int NOT NULL,
    key_id    text NOT NULL REFERENCES seal_key (key_id),
    signature bytea NOT NULL CHECK (octet_length(signature) = 64),
    signed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (period, sequence),
    FOREIGN KEY (period, sequence) REFERENCES period_seal (period, sequence)
);

CREATE FUNCTION tally_seal_key_follows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(7461234019);  -- one new key at a time (the writer may not LOCK)
    NEW.valid_from := clock_timestamp();  -- the database's clock, never the caller's
    SELECT max(valid_from) INTO last FROM seal_key;
    IF NEW.valid_from <= last THEN
        RAISE EXCEPTION 'seal_key: a new key is valid from %, not after the last key''s %',
            NEW.valid_from, last USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER seal_key_follows BEFORE INSERT ON seal_key
    FOR EACH ROW EXECUTE FUNCTION tally_seal_key_follows();

CREATE FUNCTION tally_seal_signed_by_current_key() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE current text;
BEGIN
    NEW.signed_at := clock_timestamp();  -- the database's clock: no backdated signature
    SELECT key_id INTO current FROM seal_key
     WHERE valid_from <= NEW.signed_at ORDER BY valid_from DESC LIMIT 1;
    IF current IS DISTINCT FROM NEW.key_id THEN
        RAISE EXCEPTION 'seal_signature: key % is not the key valid at % (that is %)',
            NEW.key_id, NEW.signed_at, coalesce(current, 'none') USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER seal_signature_current_key BEFORE INSERT ON seal_signature
    FOR EACH ROW EXECUTE FUNCTION tally_seal_signed_by_current_key();
"""

DOWNGRADE = """
DROP TABLE seal_signature;
DROP TABLE seal_key;
DROP FUNCTION tally_seal_signed_by_current_key();
DROP FUNCTION tally_seal_key_follows();
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in ("seal_key", "seal_signature"):
        refuse_changes(table)


def downgrade() -> None:
    run_script(DOWNGRADE)
