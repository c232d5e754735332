"""Daily rollups of usage, the read side of the API usage report and allocation tracking.

- ``api_usage_daily``: requests per organization, UTC day, OAuth client, template URI,
  method, exact status and billable flag; ``bucket`` (200/300/400/429/500) is generated from
  the status by the same rule as ``tally.domain.api_usage.bucket``.
- ``ai_usage_daily``: AI quantity (in the feature's own unit) per organization, period, UTC
  day and feature.

Both are derived data: the metering transaction adds each new event to them (so they never
disagree with the committed events), ``tally ledger verify`` recomputes them from
``usage_event`` and names any difference, and ``tally rollups rebuild`` adds the difference
back. So, unlike the ledger, their counters can be updated (never below zero); they are not
evidence, the events are. This revision fills them from the events already stored, so an
upgraded ledger's reports are whole.

Revision ID: 0009
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE api_usage_daily (
    org             text NOT NULL,
    day             date NOT NULL,
    oauth_client_id text NOT NULL,
    template_uri    text NOT NULL,
    method          text NOT NULL,
    status          integer NOT NULL CHECK (status BETWEEN 100 AND 599),
    bucket          text NOT NULL GENERATED ALWAYS AS (
                        CASE WHEN status = 429 THEN '429'
                             WHEN status >= 500 THEN '500'
                             WHEN status >= 400 THEN '400'
                             WHEN status >= 300 THEN '300'
                             ELSE '200' END) STORED,
    billable        boolean NOT NULL,
    requests        bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (org, day, oauth_client_id, template_uri, method, status, billable)
);

CREATE TABLE ai_usage_daily (
    org       text NOT NULL,
    period    text NOT NULL,
    day       date NOT NULL CHECK (to_char(day, 'YYYY-MM') = period),
    feature   text NOT NULL,
    quantity  numeric NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (org, period, day, feature)
);

INSERT INTO api_usage_daily (org, day, oauth_client_id, template_uri, method, status,
                             billable, requests)
SELECT org, (event_time AT TIME ZONE 'UTC')::date,
       data ->> 'oauth_client_id', data ->> 'template_uri', data ->> 'method',
       (data ->> 'status')::numeric::integer, status = 'metered', sum(quantity)::bigint
  FROM (SELECT org, event_time, status, quantity,
               convert_from(raw, 'UTF8')::jsonb -> 'data' AS data
          FROM usage_event
         WHERE type = 'api.request' AND status IN ('metered', 'non_billable')) AS e
 GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO ai_usage_daily (org, period, day, feature, quantity)
SELECT org, period, (event_time AT TIME ZONE 'UTC')::date, feature, sum(quantity)
  FROM usage_event
 WHERE meter = 'ai_token' AND feature IS NOT NULL
 GROUP BY 1, 2, 3, 4;
"""

DOWNGRADE = """
DROP TABLE ai_usage_daily;
DROP TABLE api_usage_daily;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
