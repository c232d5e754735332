"""API keys of the read-only HTTP API.

The invariants kept here:
- a key's secret is never stored: only its SHA-256 (64 hex digits);
- a key's role, scopes, organization, hash and dates never change; the one change allowed
  is its revocation, once (``revoked_at`` from NULL to a time); a key is never deleted, so
  the request log's key ids always name a key;
- an org_viewer key is bound to exactly one organization, the other roles to none.

Revision ID: 0006
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_truncate, run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE api_key (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('auditor', 'finance', 'org_viewer')),
    scopes      text[] NOT NULL,
    org         text,
    secret_hash text NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz CHECK (expires_at > created_at),
    revoked_at  timestamptz,
    CHECK ((role = 'org_viewer') = (org IS NOT NULL))
);

CREATE FUNCTION tally_api_key_revoke_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
       OR (NEW.id, NEW.name, NEW.role, NEW.scopes, NEW.org, NEW.secret_hash, NEW.created_at,
           NEW.expires_at)
          IS DISTINCT FROM (OLD.id, OLD.name, OLD.role, OLD.scopes, OLD.org, OLD.secret_hash,
                            OLD.created_at, OLD.expires_at)
    THEN
        RAISE EXCEPTION 'api_key: a key is only ever revoked, once; never changed or deleted'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER api_key_revoke_only BEFORE UPDATE OR DELETE ON api_key
    FOR EACH ROW EXECUTE FUNCTION tally_api_key_revoke_only();
"""

DOWNGRADE = """
DROP TABLE api_key;
DROP FUNCTION tally_api_key_revoke_only();
"""


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_truncate("api_key")


def downgrade() -> None:
    run_script(DOWNGRADE)
