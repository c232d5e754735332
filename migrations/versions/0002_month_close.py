"""Month close: commitments, invoices, the entries they bill, closed periods.

The invariants of the close live here, in PostgreSQL itself:
- an invoice, its lines, adjustments and per-feature tokens never change once written;
- invoice numbers run 1, 2, 3... without gaps (checked per INSERT statement);
- an invoice has exactly its two meter lines, and its total is the sum of its lines and
  adjustments (checked at commit, so no partial invoice is ever visible);
- a ledger entry is billed by at most one invoice line or adjustment;
- one invoice per organization and period.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_changes, refuse_truncate, run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PERIOD = "CHECK ({column} ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$')"

UPGRADE = f"""
CREATE TABLE commitment (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL REFERENCES organization (name),
    license     text NOT NULL,
    model       text NOT NULL CHECK (model IN ('named', 'concurrent', 'hourly')),
    quantity    numeric NOT NULL CHECK (quantity >= 0),
    from_period text NOT NULL {PERIOD.format(column="from_period")},
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commitment_org ON commitment (org, license, model);

CREATE TABLE invoice_counter (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL DEFAULT 0
);
INSERT INTO invoice_counter DEFAULT VALUES;

CREATE TABLE invoice (
    number            bigint PRIMARY KEY CHECK (number >= 1),
    org               text NOT NULL REFERENCES organization (name),
    period            text NOT NULL {PERIOD.format(column="period")},
    currency          text NOT NULL,
    status            text NOT NULL DEFAULT 'finalized' CHECK (status = 'finalized'),
    total             numeric NOT NULL,
    rate_card_version text NOT NULL REFERENCES rate_card (version),
    issued_at         timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org, period)
);
CREATE INDEX invoice_period ON invoice (period);

CREATE TABLE invoice_line (
    invoice     bigint NOT NULL REFERENCES invoice (number),
    meter       text NOT NULL CHECK (meter IN ('api_requests', 'ai_tokens')),
    description text NOT NULL,
    allocation  numeric NOT NULL CHECK (allocation >= 0),
    used        numeric NOT NULL CHECK (used >= 0),
    overage     numeric NOT NULL CHECK (overage >= 0),
    expired     numeric NOT NULL CHECK (expired >= 0),
    unit_price  numeric NOT NULL CHECK (unit_price >= 0),
    amount      numeric NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (invoice, meter)
);

CREATE TABLE invoice_feature (
    invoice bigint NOT NULL REFERENCES invoice (number),
    feature text NOT NULL,
    tokens  numeric NOT NULL CHECK (tokens >= 0),
    PRIMARY KEY (invoice, feature)
);

CREATE TABLE invoice_adjustment (
    invoice     bigint NOT NULL REFERENCES invoice (number),
    original    bigint NOT NULL REFERENCES invoice (number) CHECK (original < invoice),
    period      text NOT NULL {PERIOD.format(column="period")},
    meter       text NOT NULL CHECK (meter IN ('api_requests', 'ai_tokens')),
    description text NOT NULL,
    used        numeric NOT NULL CHECK (used >= 0),
    unexpired   numeric NOT NULL CHECK (unexpired >= 0),
    overage     numeric NOT NULL CHECK (overage >= 0),
    unit_price  numeric NOT NULL CHECK (unit_price >= 0),
    amount      numeric NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (invoice, original, meter)
);
CREATE INDEX invoice_adjustment_original ON invoice_adjustment (original, meter);

-- Which invoice bills an entry: usage entries once each, and the close's own entries.
CREATE TABLE billed_entry (
    entry_id bigint PRIMARY KEY REFERENCES journal_entry (id),
    invoice  bigint NOT NULL REFERENCES invoice (number),
    meter    text NOT NULL CHECK (meter IN ('api_requests', 'ai_tokens')),
    original bigint REFERENCES invoice (number)  -- set: billed by an adjustment of that invoice
);
CREATE INDEX billed_entry_invoice ON billed_entry (invoice, meter);

CREATE TABLE period_close (
    period      text PRIMARY KEY {PERIOD.format(column="period")},
    as_of       timestamptz NOT NULL,
    closed_at   timestamptz NOT NULL DEFAULT now()
);

-- Numbers continue the sequence: the statement's numbers are contiguous and start right
-- after the highest earlier number (rows are never deleted, so no gap can open later).
CREATE FUNCTION tally_invoice_numbers_gapless() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
    n bigint;
    before bigint;
BEGIN
    SELECT min(number), max(number), count(*) INTO lo, hi, n FROM new_invoices;
    SELECT coalesce(max(number), 0) INTO before FROM invoice WHERE number < lo;
    IF hi - lo + 1 <> n OR lo <> before + 1 THEN
        RAISE EXCEPTION 'ledger: invoice numbers % to % leave a gap after %', lo, hi, before
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER invoice_numbers_gapless AFTER INSERT ON invoice
    REFERENCING NEW TABLE AS new_invoices FOR EACH STATEMENT
    EXECUTE FUNCTION tally_invoice_numbers_gapless();

-- At commit: both meter lines present, and the total is what the lines and adjustments say.
CREATE FUNCTION tally_invoice_complete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lines bigint;
    summed numeric;
BEGIN
    SELECT count(*), coalesce(sum(amount), 0) INTO lines, summed
      FROM invoice_line WHERE invoice = NEW.number;
    summed := summed + coalesce(
        (SELECT sum(amount) FROM invoice_adjustment WHERE invoice = NEW.number), 0);
    IF lines <> 2 THEN
        RAISE EXCEPTION 'ledger: invoice % has % meter lines, not 2', NEW.number, lines
            USING ERRCODE = 'check_violation';
    END IF;
    IF summed <> NEW.total THEN
        RAISE EXCEPTION 'ledger: invoice % total % is not the sum of its lines %',
            NEW.number, NEW.total, summed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER invoice_complete AFTER INSERT ON invoice
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tally_invoice_complete();

-- The balance check of 0001, started from the statement's entries: the planner otherwise
-- may scan every line of the ledger (it grows with the ledger, not with the batch).
CREATE OR REPLACE FUNCTION tally_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    SELECT e.id INTO bad FROM journal_entry e
     WHERE e.id IN (SELECT DISTINCT entry_id FROM new_lines)
       AND e.xmin::text::bigint <> txid_current() % 4294967296
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: entry % is posted; its lines cannot change', bad.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    SELECT n.entry_id, s.unit, s.total INTO bad
      FROM (SELECT DISTINCT entry_id FROM new_lines) n
     CROSS JOIN LATERAL (SELECT a.unit, sum(l.amount) AS total
                           FROM entry_line l JOIN account a ON a.id = l.account_id
                          WHERE l.entry_id = n.entry_id
                          GROUP BY a.unit HAVING sum(l.amount) <> 0) s
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: unbalanced entry %: % lines sum to %, not 0',
            bad.entry_id, bad.unit, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# 0001's balance check, word for word: what a downgrade to 0001 puts back.
BALANCED_0001 = """
CREATE OR REPLACE FUNCTION tally_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    -- lines join only entries posted by this same transaction: a posted entry is closed
    SELECT e.id INTO bad FROM journal_entry e
     WHERE e.id IN (SELECT DISTINCT entry_id FROM new_lines)
       AND e.xmin::text::bigint <> txid_current() % 4294967296
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: entry % is posted; its lines cannot change', bad.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    SELECT l.entry_id, a.unit, sum(l.amount) AS total INTO bad
      FROM entry_line l JOIN account a ON a.id = l.account_id
     WHERE l.entry_id IN (SELECT DISTINCT entry_id FROM new_lines)
     GROUP BY l.entry_id, a.unit
    HAVING sum(l.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: unbalanced entry %: % lines sum to %, not 0',
            bad.entry_id, bad.unit, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

TABLES = (
    "commitment",
    "invoice",
    "invoice_line",
    "invoice_feature",
    "invoice_adjustment",
    "billed_entry",
    "period_close",
)


def upgrade() -> None:
    run_script(UPGRADE)
    for table in TABLES:
        refuse_changes(table)
    refuse_truncate("invoice_counter")


def downgrade() -> None:
    for table in (*reversed(TABLES), "invoice_counter"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for function in ("tally_invoice_numbers_gapless", "tally_invoice_complete"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
    run_script(BALANCED_0001)
