"""Producer keys: an API key that may only send usage events over HTTP, for one source.

A ``producer`` key names the one registered source its events must come from (``source``);
every other role names none. The source must be registered when the key is made (checked
here, like an org_viewer's organization), and, like every other column of a key, it never
changes afterwards: a key is only ever revoked.

Revision ID: 0018
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE api_key ADD COLUMN source text CHECK (length(source) BETWEEN 1 AND 256);
ALTER TABLE api_key DROP CONSTRAINT api_key_role_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_role_check
    CHECK (role IN ('auditor', 'finance', 'org_viewer', 'producer'));
ALTER TABLE api_key ADD CONSTRAINT api_key_producer_has_source
    CHECK ((role = 'producer') = (source IS NOT NULL));

CREATE FUNCTION tally_api_key_source_registered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM producer_source WHERE name = NEW.source) THEN
        RAISE EXCEPTION 'api_key: source % is not registered', NEW.source
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER api_key_source_registered BEFORE INSERT ON api_key
    FOR EACH ROW EXECUTE FUNCTION tally_api_key_source_registered();

CREATE OR REPLACE FUNCTION tally_api_key_revoke_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
       OR (NEW.id, NEW.name, NEW.role, NEW.scopes, NEW.org, NEW.source, NEW.secret_hash,
           NEW.created_at, NEW.expires_at)
          IS DISTINCT FROM (OLD.id, OLD.name, OLD.role, OLD.scopes, OLD.org, OLD.source,
                            OLD.secret_hash, OLD.created_at, OLD.expires_at)
    THEN
        RAISE EXCEPTION 'api_key: a key is only ever revoked, once; never changed or deleted'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
"""

DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM api_key WHERE role = 'producer') THEN
        RAISE EXCEPTION 'cannot downgrade below 0018: producer keys exist, and a key is never '
            'deleted; keep 0018' USING ERRCODE = 'restrict_violation';
    END IF;
END $$;
CREATE OR REPLACE FUNCTION tally_api_key_revoke_only() RETURNS trigger
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
DROP TRIGGER api_key_source_registered ON api_key;
DROP FUNCTION tally_api_key_source_registered();
ALTER TABLE api_key DROP CONSTRAINT api_key_producer_has_source;
ALTER TABLE api_key DROP CONSTRAINT api_key_role_check;
ALTER TABLE api_key DROP COLUMN source;
ALTER TABLE api_key ADD CONSTRAINT api_key_role_check
    CHECK (role IN ('auditor', 'finance', 'org_viewer'));
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
