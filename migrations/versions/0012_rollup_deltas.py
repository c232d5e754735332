"""Rollup deltas: the metering transaction appends each batch's rollup rows, compaction
folds them into the daily rollups.

Upserting a batch into ``api_usage_daily`` cost the drain about a third of its commit time
(a 7-column unique probe, a heap and an index insert per key, ~7,700 keys per 10,000
events of the bench mix); appending the same rows to a table without a unique key costs a
fraction of that (README, Benchmarks). So:

- ``api_usage_delta`` and ``ai_usage_delta`` hold rows of the daily rollups' key and
  counter, appended (COPY) by the transaction that stores their events: exactly once, as
  before; no unique key, so no row is locked and concurrent consumers never wait on each
  other here;
- a rollup's value is its daily row plus its deltas (the reports, verify and rebuild read
  both); ``tally rollups compact`` (and ``rebuild``) moves the deltas into the daily rows
  in one transaction, so a reader sees a delta either before or after the move, never
  both; the writer may DELETE from these two tables only (they are derived, not evidence:
  verify recomputes every rollup from the events).

Revision ID: 0012
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE api_usage_delta (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org             text NOT NULL,
    day             date NOT NULL,
    oauth_client_id text NOT NULL,
    template_uri    text NOT NULL,
    method          text NOT NULL,
    status          integer NOT NULL CHECK (status BETWEEN 100 AND 599),
    billable        boolean NOT NULL,
    requests        bigint NOT NULL CHECK (requests > 0)
);
CREATE INDEX api_usage_delta_org_day ON api_usage_delta (org, day);

CREATE TABLE ai_usage_delta (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org       text NOT NULL,
    period    text NOT NULL,
    day       date NOT NULL CHECK (to_char(day, 'YYYY-MM') = period),
    feature   text NOT NULL,
    quantity  numeric NOT NULL CHECK (quantity >= 0)
);
CREATE INDEX ai_usage_delta_org_period ON ai_usage_delta (org, period);
"""

# Fold what is still in the deltas into the daily rows first: nothing counted is lost.
DOWNGRADE = """
INSERT INTO api_usage_daily AS r (org, day, oauth_client_id, template_uri, method, status,
                                  billable, requests)
SELECT org, day, oauth_client_id, template_uri, method, status, billable, sum(requests)
  FROM api_usage_delta GROUP BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT (org, day, oauth_client_id, template_uri, method, status, billable)
DO UPDATE SET requests = r.requests + excluded.requests;
INSERT INTO ai_usage_daily AS r (org, period, day, feature, quantity)
SELECT org, period, day, feature, sum(quantity) FROM ai_usage_delta GROUP BY 1, 2, 3, 4
ON CONFLICT (org, period, day, feature) DO UPDATE SET quantity = r.quantity + excluded.quantity;
DROP TABLE ai_usage_delta;
DROP TABLE api_usage_delta;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
