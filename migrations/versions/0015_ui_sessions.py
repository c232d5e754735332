"""Sessions of the pages under /ui, and API keys only for organizations that exist.

The invariants kept here:
- a session is a row ``ui_session`` of the SHA-256 of its random id (the id itself lives
  only in the browser's cookie), the key it was opened with, and its expiry: 8 hours, or
  the key's own expiry when sooner. It is live while neither it nor its key is revoked or
  expired (``tally apikey revoke`` ends every session of the key at once);
- the API connects as tally_reader, which may only SELECT: it opens and revokes sessions
  through two SECURITY DEFINER functions (owned by the owner, their ``search_path``
  pinned), the only writes it may make. ``ui_session_open`` opens a session only for a
  live key's secret itself, hashed (SHA-256) and checked inside the function: its stored
  hash, which tally_reader may read, opens nothing. It keeps at most 20 live sessions a key
  (signing in again revokes the oldest beyond). ``ui_session_revoke`` only revokes.
  EXECUTE is revoked from PUBLIC here and granted to tally_reader by ``tally migrate``
  (``privileges``);
- a session is only ever revoked, once; never changed; deleted only a day after it
  expired (``ui_session_open`` sweeps those);
- an API key names an organization that exists (checked for every new key; keys made
  before this revision are kept as they are: they are never changed or deleted).

Revision ID: 0015
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_truncate, run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE ui_session (
    id_hash    text PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{{64}}$'),
    key_id     text NOT NULL REFERENCES api_key (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
    revoked_at timestamptz
);
CREATE INDEX ui_session_expires ON ui_session (expires_at);
CREATE INDEX ui_session_live_of_key ON ui_session (key_id, created_at) WHERE revoked_at IS NULL;

CREATE FUNCTION tally_ui_session_revoke_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.expires_at < now() - interval '1 day' THEN
            RETURN OLD;
        END IF;
    ELSIF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
          AND (NEW.id_hash, NEW.key_id, NEW.created_at, NEW.expires_at)
              IS NOT DISTINCT FROM (OLD.id_hash, OLD.key_id, OLD.created_at, OLD.expires_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ui_session: a session is only ever revoked, once, and deleted a day '
                    'after it expired' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ui_session_revoke_only BEFORE UPDATE OR DELETE ON ui_session
    FOR EACH ROW EXECUTE FUNCTION tally_ui_session_revoke_only();

-- The session of the live key whose secret is key_secret (the secret itself: its SHA-256
-- is compared here, so the stored hash, which tally_reader may SELECT, opens nothing): its
-- expiry, or NULL (and no session) for an unknown, expired or revoked key. The key's
-- live sessions beyond the 20 newest are revoked (the key's row is locked meanwhile, so
-- concurrent sign-ins count each other).
CREATE FUNCTION ui_session_open(session_hash text, key_secret text)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    live api_key%ROWTYPE;
    until timestamptz;
BEGIN
    SELECT * INTO live FROM api_key
     WHERE secret_hash = encode(sha256(convert_to(key_secret, 'UTF8')), 'hex')
       AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    until := least(now() + interval '8 hours', live.expires_at);  -- least skips NULL
    DELETE FROM ui_session WHERE expires_at < now() - interval '1 day';
    INSERT INTO ui_session (id_hash, key_id, expires_at)
    VALUES (session_hash, live.id, until);
    UPDATE ui_session SET revoked_at = now()
     WHERE id_hash IN (SELECT id_hash FROM ui_session
                        WHERE key_id = live.id AND revoked_at IS NULL AND expires_at > now()
                          AND id_hash <> session_hash
                        ORDER BY created_at DESC, id_hash OFFSET 19);  -- 19 + the new one
    RETURN until;
END $$;

-- Sign-out: true when this call revoked the session.
CREATE FUNCTION ui_session_revoke(session_hash text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
    WITH hit AS (UPDATE ui_session SET revoked_at = now()
                  WHERE id_hash = session_hash AND revoked_at IS NULL RETURNING 1)
    SELECT count(*) > 0 FROM hit
$$;

REVOKE ALL ON FUNCTION ui_session_open(text, text), ui_session_revoke(text) FROM PUBLIC;

ALTER TABLE api_key ADD CONSTRAINT api_key_org_exists
    FOREIGN KEY (org) REFERENCES organization (name) NOT VALID;
"""

DOWNGRADE = """
ALTER TABLE api_key DROP CONSTRAINT api_key_org_exists;
DROP FUNCTION ui_session_revoke(text);
DROP FUNCTION ui_session_open(text, text);
DROP TABLE ui_session;
DROP FUNCTION tally_ui_session_revoke_only();
"""


def upgrade() -> None:
    schema = op.get_bind().exec_driver_sql("SELECT quote_ident(current_schema())").scalar()
    run_script(UPGRADE.format(schema=schema))
    refuse_truncate("ui_session")


def downgrade() -> None:
    run_script(DOWNGRADE)
