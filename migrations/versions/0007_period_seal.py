"""The month seal: a Merkle root over a closed period's entries, kept for good.

The invariants kept here:
- a seal (``period_seal``) and the lane heads it was taken at (``period_seal_lane``) are
  records: UPDATE, DELETE and TRUNCATE are refused;
- only a closed period is sealed (a foreign key to ``period_close``), its seals numbered
  1, 2, ... without a gap (each INSERT must be the next number);
- a seal holds the head of every lane (checked at commit), and no head is behind the one
  the period's previous seal holds: what a seal covers (its period's entries between the
  previous seal's heads and its own) can never overlap an earlier seal.

``journal_entry (period, lane, seq)`` is indexed: a seal reads its entries that way.

Revision ID: 0007
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE period_seal (
    period       text NOT NULL REFERENCES period_close (period),
    sequence     int NOT NULL CHECK (sequence >= 1),
    root         bytea NOT NULL CHECK (octet_length(root) = 32),
    entries      bigint NOT NULL CHECK (entries >= 0),
    last_invoice bigint NOT NULL CHECK (last_invoice >= 0),
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period, sequence)
);

CREATE TABLE period_seal_lane (
    period    text NOT NULL,
    sequence  int NOT NULL,
    lane      int NOT NULL,  -- no foreign key: its share lock would stall writers' lanes
    seq       bigint NOT NULL CHECK (seq >= 0),
    head_hash bytea NOT NULL CHECK (octet_length(head_hash) = 32),
    PRIMARY KEY (period, sequence, lane),
    FOREIGN KEY (period, sequence) REFERENCES period_seal (period, sequence)
);

CREATE INDEX journal_entry_period_lane_seq ON journal_entry (period, lane, seq);

CREATE FUNCTION tally_seal_follows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last int;
BEGIN
    SELECT coalesce(max(sequence), 0) INTO last FROM period_seal WHERE period = NEW.period;
    IF NEW.sequence <> last + 1 THEN
        RAISE EXCEPTION 'ledger: seal % of % does not follow seal %', NEW.sequence,
            NEW.period, last USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER period_seal_follows BEFORE INSERT ON period_seal
    FOR EACH ROW EXECUTE FUNCTION tally_seal_follows();

CREATE FUNCTION tally_seal_head_not_behind() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE before bigint;
BEGIN
    SELECT seq INTO before FROM period_seal_lane
     WHERE period = NEW.period AND sequence = NEW.sequence - 1 AND lane = NEW.lane;
    IF NEW.seq < before THEN
        RAISE EXCEPTION 'ledger: seal % of % puts lane % at seq %, behind seal %''s %',
            NEW.sequence, NEW.period, NEW.lane, NEW.seq, NEW.sequence - 1, before
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER period_seal_lane_not_behind BEFORE INSERT ON period_seal_lane
    FOR EACH ROW EXECUTE FUNCTION tally_seal_head_not_behind();

CREATE FUNCTION tally_seal_has_every_lane() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE held bigint;
DECLARE lanes bigint;
BEGIN
    SELECT count(*) INTO held FROM period_seal_lane
     WHERE period = NEW.period AND sequence = NEW.sequence;
    SELECT count(*) INTO lanes FROM ledger_lane;
    IF held <> lanes THEN
        RAISE EXCEPTION 'ledger: seal % of % holds % lane heads, the ledger has % lanes',
            NEW.sequence, NEW.period, held, lanes USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER period_seal_every_lane AFTER INSERT ON period_seal
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tally_seal_has_every_lane();
"""

DOWNGRADE = """
DROP TABLE period_seal_lane;
DROP TABLE period_seal;
DROP FUNCTION tally_seal_follows();
DROP FUNCTION tally_seal_head_not_behind();
DROP FUNCTION tally_seal_has_every_lane();
DROP INDEX journal_entry_period_lane_seq;
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in ("period_seal", "period_seal_lane"):
        refuse_changes(table)


def downgrade() -> None:
    run_script(DOWNGRADE)
