"""Producer sources: which CloudEvents ``source`` may bill which organizations.

The invariants of the registry live here, in PostgreSQL itself:
- a source's permissions are never edited: a change (``tally source add`` again, ``tally
  source remove``) appends a new version, and the newest version (highest id) counts;
- a version allows any organization, or a non-empty list of organizations that exist, or
  (removed) nothing;
- versions refuse UPDATE, DELETE and TRUNCATE.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE producer_source (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    enabled     boolean NOT NULL,
    any_org     boolean NOT NULL,
    orgs        text[] NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (array_position(orgs, NULL) IS NULL),
    CHECK (CASE WHEN NOT enabled THEN NOT any_org AND cardinality(orgs) = 0
                WHEN any_org THEN cardinality(orgs) = 0
                ELSE cardinality(orgs) >= 1 END)
);
CREATE INDEX producer_source_newest ON producer_source (name, id DESC);

-- An array cannot carry a foreign key: the organizations are checked per statement.
-- Organizations are never deleted, so what exists stays.
CREATE FUNCTION tally_check_source_orgs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    SELECT n.name, o.org INTO bad FROM new_sources n CROSS JOIN LATERAL unnest(n.orgs) AS o(org)
     WHERE NOT EXISTS (SELECT 1 FROM organization WHERE name = o.org)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: source % names organization %, which does not exist',
            bad.name, bad.org USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER producer_source_orgs_exist AFTER INSERT ON producer_source
    REFERENCING NEW TABLE AS new_sources FOR EACH STATEMENT
    EXECUTE FUNCTION tally_check_source_orgs();
"""


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_changes("producer_source")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS producer_source CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tally_check_source_orgs() CASCADE")
