"""Invoice inputs: each invoice's input digest, written by the close with the invoice.

The invariants kept here:
- one row per invoice at most (the invoice's number is the key), written in the close's
  transaction; invoices issued before this revision have none;
- ``digest`` is a SHA-256 (32 bytes) of the invoice's inputs in the canonical byte form of
  ``tally.domain.reproduction`` (docs: the month close, "Reproducible invoices");
  ``parts`` says what it covers: a JSON array of ``{"part", "items", "sha256"}``, one per
  line, adjustment, the license reports, the requests not billed, the commitments and the
  token purchases;
- a record: UPDATE, DELETE and TRUNCATE are refused. The writer inserts, the reader
  selects (the grants' default).

``usage_event_unbilled`` finds an organization's events of a period that no entry carries
(requests not billable, license reports, corrections) without reading the others: the close
hashes them per invoice, and a customer's statement lists them.

Revision ID: 0021
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import refuse_changes, run_script

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE invoice_input (
    invoice     bigint PRIMARY KEY REFERENCES invoice (number),
    digest      bytea NOT NULL CHECK (octet_length(digest) = 32),
    parts       jsonb NOT NULL CHECK (jsonb_typeof(parts) = 'array'),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_event_unbilled ON usage_event (org, period) WHERE entry_id IS NULL
"""

DOWNGRADE = """
DROP INDEX usage_event_unbilled;
DROP TABLE invoice_input
"""


def upgrade() -> None:
    run_script(UPGRADE)
    refuse_changes("invoice_input")


def downgrade() -> None:
    run_script(DOWNGRADE)
