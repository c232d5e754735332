"""Voids: a metered event taken back, with the reason and who asked, by a reversing entry.

The invariants kept here:
- ``event_void`` holds at most one void per event, forever (its key is the event's key):
  voiding twice is refused by the primary key;
- only a metered event is voided (a non-billable request, a license report or a correction
  was never metered), and the void names the event's own organization and period;
- the void's entry is a ``usage_reversal`` of that organization and period, and reverses
  one event only (``entry_id`` is unique);
- a void asked by a ``tally.void`` event names that event, stored with the status
  ``correction``, from the voided event's own source;
- a running total (``meter_total``, ``usage_total``) shrinks only in the transaction that
  records a void of its organization and period;
- voids are records: UPDATE, DELETE and TRUNCATE are refused;
- the rollups' deltas may be negative (a void's); the daily rows stay at least zero;
- an invoice adjustment may now be a credit (a void in a closed period, billed at the next
  close): its used, unexpired, overage and amount then are all at most zero, never mixed.

``usage_event.status`` gains ``correction``: a ``tally.void`` event is stored like any other
(its key is idempotent forever) but meters nothing itself.

Revision ID: 0020
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# Each widened CHECK is added NOT VALID: every stored row met the narrower check it replaces,
# so none needs reading again (a scan of usage_event under an exclusive lock would stop
# metering on a large ledger); new rows are checked as always.
UPGRADE = """
ALTER TABLE usage_event DROP CONSTRAINT usage_event_status_check;
ALTER TABLE usage_event ADD CONSTRAINT usage_event_status_check
    CHECK (status IN ('metered', 'non_billable', 'recorded', 'correction')) NOT VALID;

-- a void in a closed period is credited at the next close: an adjustment of one sign
ALTER TABLE invoice_adjustment DROP CONSTRAINT invoice_adjustment_used_check,
    DROP CONSTRAINT invoice_adjustment_unexpired_check,
    DROP CONSTRAINT invoice_adjustment_overage_check,
    DROP CONSTRAINT invoice_adjustment_amount_check;
ALTER TABLE invoice_adjustment ADD CONSTRAINT invoice_adjustment_one_sign CHECK (
    (used >= 0 AND unexpired >= 0 AND overage >= 0 AND amount >= 0)
    OR (used <= 0 AND unexpired <= 0 AND overage <= 0 AND amount <= 0)) NOT VALID;

-- a void appends the negative of its event to the rollups' deltas
ALTER TABLE api_usage_delta DROP CONSTRAINT api_usage_delta_requests_check,
    ADD CONSTRAINT api_usage_delta_requests_check CHECK (requests <> 0) NOT VALID;
ALTER TABLE ai_usage_delta DROP CONSTRAINT ai_usage_delta_quantity_check;

CREATE TABLE event_void (
    source       text NOT NULL,
    id           text NOT NULL,
    org          text NOT NULL,
    period       text NOT NULL,
    entry_id     bigint NOT NULL UNIQUE REFERENCES journal_entry (id),
    reason       text NOT NULL CHECK (reason ~ '\\S' AND length(reason) <= 1000),
    requested_by text NOT NULL CHECK (requested_by ~ '\\S' AND length(requested_by) <= 512),
    void_source  text,
    void_id      text,
    voided_at    timestamptz NOT NULL,
    PRIMARY KEY (source, id),
    FOREIGN KEY (source, id) REFERENCES usage_event (source, id),
    FOREIGN KEY (void_source, void_id) REFERENCES usage_event (source, id),
    UNIQUE (void_source, void_id),
    CHECK ((void_source IS NULL) = (void_id IS NULL)),
    CHECK (void_source IS NULL OR void_source = source)
);
CREATE INDEX event_void_org_period ON event_void (org, period);

CREATE FUNCTION tally_event_void_checks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE event usage_event%ROWTYPE; entry journal_entry%ROWTYPE; asked text;
BEGIN
    SELECT * INTO event FROM usage_event WHERE source = NEW.source AND id = NEW.id;
    IF event.status IS DISTINCT FROM 'metered' THEN
        RAISE EXCEPTION 'event_void: event (%, %) is %, not metered: only usage is voided',
            NEW.source, NEW.id, event.status USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.org, NEW.period) IS DISTINCT FROM (event.org, event.period) THEN
        RAISE EXCEPTION 'event_void: event (%, %) is %''s of %, not %''s of %', NEW.source,
            NEW.id, event.org, event.period, NEW.org, NEW.period
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT * INTO entry FROM journal_entry WHERE id = NEW.entry_id;
    IF (entry.kind, entry.org, entry.period)
       IS DISTINCT FROM ('usage_reversal', NEW.org, NEW.period) THEN
        RAISE EXCEPTION 'event_void: entry % is not a usage_reversal of % for %',
            NEW.entry_id, NEW.org, NEW.period USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.void_id IS NOT NULL THEN
        SELECT status INTO asked FROM usage_event
         WHERE source = NEW.void_source AND id = NEW.void_id;
        IF asked IS DISTINCT FROM 'correction' THEN
            RAISE EXCEPTION 'event_void: (%, %) is not a stored tally.void event',
                NEW.void_source, NEW.void_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER event_void_checks BEFORE INSERT ON event_void
    FOR EACH ROW EXECUTE FUNCTION tally_event_void_checks();

-- A running total (AI quantity, usage) shrinks only in the transaction that records a void
-- of its organization and period (in that transaction itself, not in a savepoint of it: the
-- void's row must carry the transaction's own id: a void in a savepoint is refused, safely).
CREATE FUNCTION tally_voided_here(org text, period text) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM event_void x WHERE x.org = $1 AND x.period = $2
                      AND x.xmin = pg_current_xact_id()::xid) $$;
CREATE OR REPLACE FUNCTION tally_meter_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.quantity < OLD.quantity
                            AND NOT tally_voided_here(NEW.org, NEW.period))
       OR (NEW.org, NEW.period, NEW.feature, NEW.rate_card_version)
          IS DISTINCT FROM (OLD.org, OLD.period, OLD.feature, OLD.rate_card_version) THEN
        RAISE EXCEPTION 'ledger: a running meter total only grows, but for a void'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION tally_usage_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.used < OLD.used AND NOT tally_voided_here(NEW.org, NEW.period))
       OR (NEW.org, NEW.period, NEW.meter) IS DISTINCT FROM (OLD.org, OLD.period, OLD.meter) THEN
        RAISE EXCEPTION 'ledger: a running usage total only grows, but for a void'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
"""

DOWNGRADE = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM event_void) OR EXISTS (SELECT 1 FROM usage_event
                                                     WHERE status = 'correction') THEN
        RAISE EXCEPTION 'voids exist: a revision before 0020 would count voided events again';
    END IF;
END $$;
CREATE OR REPLACE FUNCTION tally_meter_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.quantity < OLD.quantity
       OR (NEW.org, NEW.period, NEW.feature, NEW.rate_card_version)
          IS DISTINCT FROM (OLD.org, OLD.period, OLD.feature, OLD.rate_card_version) THEN
        RAISE EXCEPTION 'ledger: a running meter total only grows'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION tally_usage_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.used < OLD.used
       OR (NEW.org, NEW.period, NEW.meter) IS DISTINCT FROM (OLD.org, OLD.period, OLD.meter) THEN
        RAISE EXCEPTION 'ledger: a running usage total only grows'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
DROP FUNCTION tally_voided_here(text, text);
DROP TABLE event_void;
DROP FUNCTION tally_event_void_checks();
ALTER TABLE usage_event DROP CONSTRAINT usage_event_status_check;
ALTER TABLE usage_event ADD CONSTRAINT usage_event_status_check
    CHECK (status IN ('metered', 'non_billable', 'recorded'));
ALTER TABLE api_usage_delta DROP CONSTRAINT api_usage_delta_requests_check,
    ADD CONSTRAINT api_usage_delta_requests_check CHECK (requests > 0);
ALTER TABLE ai_usage_delta ADD CONSTRAINT ai_usage_delta_quantity_check CHECK (quantity >= 0);
ALTER TABLE invoice_adjustment DROP CONSTRAINT invoice_adjustment_one_sign,
    ADD CONSTRAINT invoice_adjustment_used_check CHECK (used >= 0),
    ADD CONSTRAINT invoice_adjustment_unexpired_check CHECK (unexpired >= 0),
    ADD CONSTRAINT invoice_adjustment_overage_check CHECK (overage >= 0),
    ADD CONSTRAINT invoice_adjustment_amount_check CHECK (amount >= 0);
"""


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_changes("event_void")


def downgrade() -> None:
    run_script(DOWNGRADE)
