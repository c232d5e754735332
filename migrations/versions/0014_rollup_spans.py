"""Coarser API usage rollups, so that a range of days reads few rows (each page
<= 200 ms for an organization with 10M events).

One organization with ~6,200 client x URL x status keys a day made the report's 30 days
176,594 ``api_usage_daily`` rows and 3 months 541,640, and the dashboard's daily requests
another 176k-row aggregate. So:

- ``usage_spans(day)``: the two spans a day is summed into, its month-week (days 1-7,
  8-14, 15-21, 22-28, 29-end: the AI token pricing page's weeks) and its month (the domain's
  ``tally.domain.api_usage.spans_of`` says the same; a test compares them);
- ``api_usage_span``: ``api_usage_daily``'s key with a span (first and last day) for the
  day: the report reads whole months and month-weeks here, single days from the daily rows
  and every day's not yet compacted deltas;
- ``api_billable_daily``: billable requests per organization and day, the dashboard's trend.

Derived like the daily rows, and written once, by the same statement: compaction folds the
moved deltas into the daily rows and these two tables (the metering transaction still only
appends deltas); ``tally ledger verify`` checks each row equals the sum of its daily rows,
``tally rollups rebuild`` brings them back to it. This revision fills them from the daily
rows (the deltas are not folded yet, so they belong to neither).

Revision ID: 0014
"""

from __future__ import annotations

from tally.adapters.postgres.ddl import run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
-- Not STRICT: PostgreSQL inlines a plain SQL table function into the query calling it
-- (compaction calls it for every delta moved: about twice as slow as a function call).
CREATE FUNCTION usage_spans(day date) RETURNS TABLE (first_day date, last_day date)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT month + week * 7, CASE WHEN week = 4 THEN month_end ELSE month + week * 7 + 6 END
      FROM (SELECT least((extract(day FROM day)::integer - 1) / 7, 4) AS week, month,
                   (month + interval '1 month')::date - 1 AS month_end
              FROM (SELECT day - extract(day FROM day)::integer + 1 AS month) m) w
    UNION ALL
    SELECT month, (month + interval '1 month')::date - 1
      FROM (SELECT day - extract(day FROM day)::integer + 1 AS month) m
$$;

CREATE FUNCTION is_usage_span(first_day date, last_day date) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM usage_spans(first_day) s
                    WHERE s.first_day = $1 AND s.last_day = $2)
$$;

CREATE TABLE api_usage_span (
    org             text NOT NULL,
    first_day       date NOT NULL,
    last_day        date NOT NULL,
    oauth_client_id text NOT NULL,
    template_uri    text NOT NULL,
    method          text NOT NULL,
    status          integer NOT NULL CHECK (status BETWEEN 100 AND 599),
    billable        boolean NOT NULL,
    requests        bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (org, first_day, last_day, oauth_client_id, template_uri, method, status,
                 billable),
    CHECK (is_usage_span(first_day, last_day))
);

CREATE TABLE api_billable_daily (
    org       text NOT NULL,
    day       date NOT NULL,
    requests  bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (org, day)
);

INSERT INTO api_usage_span (org, first_day, last_day, oauth_client_id, template_uri, method,
                            status, billable, requests)
SELECT d.org, s.first_day, s.last_day, d.oauth_client_id, d.template_uri, d.method, d.status,
       d.billable, sum(d.requests)
  FROM api_usage_daily d CROSS JOIN LATERAL usage_spans(d.day) s
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

INSERT INTO api_billable_daily (org, day, requests)
SELECT org, day, sum(requests) FROM api_usage_daily WHERE billable GROUP BY 1, 2;
"""

DOWNGRADE = """
DROP TABLE api_billable_daily;
DROP TABLE api_usage_span;
DROP FUNCTION is_usage_span(date, date);
DROP FUNCTION usage_spans(date);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
