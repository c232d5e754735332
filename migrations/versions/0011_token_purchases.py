"""Token purchases: AI tokens bought for a period (the AI token pricing page), billed on
its invoice.

The invariants this revision adds, in PostgreSQL itself:
- a purchase is a record, never changed or removed (UPDATE, DELETE, TRUNCATE refused), of
  a positive number of tokens for an organization and a period;
- a purchase is refused once its period is closed or the organization has its invoice for
  it (the writer also holds the close's advisory lock, shared, so the check and a running
  close cannot cross);
- an invoice has exactly its two meter lines, plus an ``ai_tokens_purchased`` line when and
  only when the organization bought tokens for the period, whose allocation is the sum of
  those purchases (used, overage and expired zero); the total is still the sum of its
  lines and adjustments (checked at commit, as in 0002);
- the close's ``purchase`` entry is billed by that line (``billed_entry.meter``).

Revision ID: 0011
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

METERS_0002 = "'api_requests', 'ai_tokens'"
METERS = f"{METERS_0002}, 'ai_tokens_purchased'"
METER_CHECKED = ("invoice_line", "billed_entry")

UPGRADE = f"""
CREATE TABLE token_purchase (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL REFERENCES organization (name),
    period      text NOT NULL CHECK (period ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$'),
    tokens      numeric NOT NULL CHECK (tokens > 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    note        text
);
CREATE INDEX token_purchase_org_period ON token_purchase (org, period);

CREATE FUNCTION tally_purchase_open_period() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM period_close WHERE period = NEW.period)
       OR EXISTS (SELECT 1 FROM invoice WHERE org = NEW.org AND period = NEW.period) THEN
        RAISE EXCEPTION 'ledger: period % is closed for %: tokens are bought for a period '
            'still open', NEW.period, NEW.org USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER token_purchase_open_period BEFORE INSERT ON token_purchase
    FOR EACH ROW EXECUTE FUNCTION tally_purchase_open_period();

CREATE OR REPLACE FUNCTION tally_invoice_complete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lines bigint;
    summed numeric;
    bought numeric;
    purchase record;
    billed boolean;
BEGIN
    SELECT count(*) FILTER (WHERE meter IN ({METERS_0002})), coalesce(sum(amount), 0)
      INTO lines, summed FROM invoice_line WHERE invoice = NEW.number;
    summed := summed + coalesce(
        (SELECT sum(amount) FROM invoice_adjustment WHERE invoice = NEW.number), 0);
    IF lines <> 2 THEN
        RAISE EXCEPTION 'ledger: invoice % has % meter lines, not 2', NEW.number, lines
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT sum(tokens) INTO bought FROM token_purchase
     WHERE org = NEW.org AND period = NEW.period;
    SELECT * INTO purchase FROM invoice_line
     WHERE invoice = NEW.number AND meter = 'ai_tokens_purchased';
    billed := FOUND;
    IF billed <> (bought IS NOT NULL)
       OR (billed AND (purchase.allocation <> bought OR purchase.used <> 0
                       OR purchase.overage <> 0 OR purchase.expired <> 0)) THEN
        RAISE EXCEPTION 'ledger: invoice % bills % purchased tokens; % were bought for %',
            NEW.number, CASE WHEN billed THEN purchase.allocation ELSE 0 END,
            coalesce(bought, 0), NEW.period
            USING ERRCODE = 'check_violation';
    END IF;
    IF summed <> NEW.total THEN
        RAISE EXCEPTION 'ledger: invoice % total % is not the sum of its lines %',
            NEW.number, NEW.total, summed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# 0002's completeness check, word for word: what a downgrade puts back.
INVOICE_COMPLETE_0002 = """
CREATE OR REPLACE FUNCTION tally_invoice_complete() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""

REFUSE_DOWNGRADE = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM invoice_line WHERE meter = 'ai_tokens_purchased') THEN
        RAISE EXCEPTION 'invoices bill purchased tokens: revision 0011 cannot be undone '
            'without rewriting them' USING ERRCODE = 'restrict_violation';
    END IF;
END $$
"""


def _meters(meters: str) -> None:
    for table in METER_CHECKED:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_meter_check, "
            f"ADD CONSTRAINT {table}_meter_check CHECK (meter IN ({meters}))"
        )


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_changes("token_purchase")
    _meters(METERS)


def downgrade() -> None:
    run_script(REFUSE_DOWNGRADE)
    _meters(METERS_0002)
    run_script(INVOICE_COMPLETE_0002)
    op.execute("DROP TABLE token_purchase")
    op.execute("DROP FUNCTION tally_purchase_open_period()")
