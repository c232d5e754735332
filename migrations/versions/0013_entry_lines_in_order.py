"""An entry's lines in line order, with what a reader of them needs, in one index.

The GL export (and an entry's page, its lineage) reads an entry's lines by ``entry_id``
then ``id``; with the account and the amount in the index too, PostgreSQL reads them with
an index-only scan per entry, in order, instead of scanning every line of the ledger for a
hash join and sorting the period's lines (README, Benchmarks: the export of a
1,000,000-line period out of 10,000,000). It replaces 0001's index on ``entry_id`` alone,
so a posting still writes one index for this.

Building it locks the lines against writes for as long as the build takes (seconds per
million lines): run ``tally migrate`` at a quiet moment on a large ledger.

Revision ID: 0013
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX entry_line_entry_line ON entry_line (entry_id, id) INCLUDE (account_id, amount);
DROP INDEX entry_line_entry
"""

DOWNGRADE = """
CREATE INDEX entry_line_entry ON entry_line (entry_id);
DROP INDEX entry_line_entry_line
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
