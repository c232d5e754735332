"""The balance check reads each line's unit by its account's primary key.

0002's check (every entry a statement gives lines to sums to zero per unit) joined the
entry's lines to ``account``. Once the account table outgrows ``work_mem`` the planner may
hash the whole of it for that join, and a hash of several batches is rebuilt at every
rescan: once per entry of the statement. With about 450,000 accounts (100,000
organizations), one close chunk's INSERT into ``entry_line`` (2,000 entries) ran for
minutes, and so would a consumer's batch. The same check, the same findings; the unit is
now a scalar subquery per line (an index probe), whatever the statistics say.

Revision ID: 0017
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
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
    -- each line's unit by its account's primary key, one probe per line: a join here may
    -- be planned as a hash of the whole account table, rebuilt for every entry once it
    -- outgrows work_mem
    SELECT n.entry_id, s.unit, s.total INTO bad
      FROM (SELECT DISTINCT entry_id FROM new_lines) n
     CROSS JOIN LATERAL (SELECT u.unit, sum(u.amount) AS total
                           FROM (SELECT l.amount,
                                        (SELECT a.unit FROM account a
                                          WHERE a.id = l.account_id) AS unit
                                   FROM entry_line l
                                  WHERE l.entry_id = n.entry_id) u
                          GROUP BY u.unit HAVING sum(u.amount) <> 0) s
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: unbalanced entry %: % lines sum to %, not 0',
            bad.entry_id, bad.unit, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

# 0002's balance check, word for word: what a downgrade to 0016 puts back.
BALANCED_0002 = """
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


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(BALANCED_0002)
