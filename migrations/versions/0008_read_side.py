"""The read side's storage: per-account rollups kept by the posting transaction, and the
indexes the auditor's reads walk.

- ``account_day``: per account and UTC day of ``posted_at``, the debits, credits and line
  count posted, and the lowest and highest entry id among them. A balance as of an instant
  is the sum of the days before it plus the lines of that one day (found by the entry-id
  range), so it costs a few dozen rows however long the account's history is.
- ``account_period``: per account and entry period, the debits, credits and line count. A
  period's trial balance reads these (one row per account and period), not the lines.

Invariants kept here: a rollup row only grows (debits, credits and lines never decrease,
the entry-id range only widens, keys never change) and is never deleted or truncated;
``tally ledger verify`` recomputes both tables from the lines and names every difference.
Debits are positive line amounts, credits the negated negative ones (both >= 0).

Revision ID: 0008
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_truncate, run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE account_day (
    account_id  bigint NOT NULL REFERENCES account (id),
    day         date NOT NULL,
    debits      numeric NOT NULL CHECK (debits >= 0),
    credits     numeric NOT NULL CHECK (credits >= 0),
    lines       bigint NOT NULL CHECK (lines > 0),
    first_entry bigint NOT NULL,
    last_entry  bigint NOT NULL CHECK (last_entry >= first_entry),
    PRIMARY KEY (account_id, day)
);

CREATE TABLE account_period (
    account_id bigint NOT NULL REFERENCES account (id),
    period     text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    debits     numeric NOT NULL CHECK (debits >= 0),
    credits    numeric NOT NULL CHECK (credits >= 0),
    lines      bigint NOT NULL CHECK (lines > 0),
    PRIMARY KEY (account_id, period)
);

INSERT INTO account_day
SELECT l.account_id, (e.posted_at AT TIME ZONE 'UTC')::date,
       sum(greatest(l.amount, 0)), sum(greatest(-l.amount, 0)), count(*), min(e.id), max(e.id)
  FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id
 GROUP BY 1, 2;

INSERT INTO account_period
SELECT l.account_id, e.period, sum(greatest(l.amount, 0)), sum(greatest(-l.amount, 0)), count(*)
  FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id
 WHERE e.period IS NOT NULL
 GROUP BY 1, 2;

-- An account's lines in entry order (balances, movements, lines of one day), amounts in the
-- index itself (it replaces 0001's index on account_id alone).
CREATE INDEX entry_line_account_entry ON entry_line (account_id, entry_id) INCLUDE (amount);
DROP INDEX entry_line_account;
CREATE INDEX journal_entry_org_id ON journal_entry (org, id);
CREATE INDEX journal_entry_period_id ON journal_entry (period, id);
CREATE INDEX journal_entry_posted_at ON journal_entry (posted_at);

CREATE FUNCTION tally_rollup_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.account_id <> OLD.account_id OR NEW.debits < OLD.debits
       OR NEW.credits < OLD.credits OR NEW.lines <= OLD.lines THEN
        RAISE EXCEPTION 'ledger: a rollup of % only grows with new lines', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_TABLE_NAME = 'account_day' THEN
        IF NEW.day <> OLD.day OR NEW.first_entry > OLD.first_entry
           OR NEW.last_entry < OLD.last_entry THEN
            RAISE EXCEPTION 'ledger: a rollup of % only grows with new lines', TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END IF;
    ELSIF NEW.period <> OLD.period THEN
        RAISE EXCEPTION 'ledger: a rollup of % only grows with new lines', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER account_day_grows BEFORE UPDATE OR DELETE ON account_day
    FOR EACH ROW EXECUTE FUNCTION tally_rollup_grows();
CREATE TRIGGER account_period_grows BEFORE UPDATE OR DELETE ON account_period
    FOR EACH ROW EXECUTE FUNCTION tally_rollup_grows()
"""

DOWNGRADE = """
DROP TABLE account_period;
DROP TABLE account_day;
DROP FUNCTION tally_rollup_grows();
DROP INDEX journal_entry_posted_at;
DROP INDEX journal_entry_period_id;
DROP INDEX journal_entry_org_id;
CREATE INDEX entry_line_account ON entry_line (account_id);
DROP INDEX entry_line_account_entry
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in ("account_day", "account_period"):
        refuse_truncate(table)


def downgrade() -> None:
    run_script(DOWNGRADE)
