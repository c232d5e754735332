"""Threshold alerts, their outbox, and the webhooks they are delivered to.

The invariants kept here:
- an alert is recorded once per organization, period, meter, kind and threshold (the
  unique key the metering transaction inserts against with ON CONFLICT DO NOTHING), and
  never rewritten or removed;
- an organization's thresholds are versions (the newest per organization counts), each a
  non-empty list of percentages in (0, 1000];
- a webhook is versions too: its first version is its only enabled one (``tally webhook
  add``), a later disabled version removes it (``tally webhook remove``) and forgets its
  secret. The secret is kept as given (``whsec_`` + base64): signing needs the key itself,
  so it cannot be hashed; the reader role cannot SELECT that column (privileges.py);
- publishing an alert on the outbound stream is recorded once (``alert_published``), each
  webhook attempt once per alert, webhook and attempt number (``webhook_attempt``);
- every one of these tables refuses UPDATE, DELETE and TRUNCATE;
- ``usage_total`` is each organization's committed usage per period and meter (the sum of
  its usage accounts), kept in the metering transaction so detection reads one row instead
  of summing a month of entry lines; it only grows, and starts from the ledger's balances.

Revision ID: 0010
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_changes, refuse_truncate, run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("webhook_attempt", "alert_published", "alert", "webhook", "alert_threshold")

UPGRADE = r"""
CREATE TABLE alert_threshold (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL REFERENCES organization (name),
    thresholds  numeric[] NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(thresholds) BETWEEN 1 AND 20),
    CHECK (array_position(thresholds, NULL) IS NULL),
    CHECK (0 < ALL (thresholds) AND 1000 >= ALL (thresholds))
);
CREATE INDEX alert_threshold_newest ON alert_threshold (org, id DESC);

CREATE TABLE alert (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL REFERENCES organization (name),
    period      text NOT NULL CHECK (period ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    meter       text NOT NULL CHECK (meter IN ('api_request', 'ai_token')),
    kind        text NOT NULL CHECK (kind IN ('used', 'projected')),
    threshold   numeric NOT NULL CHECK (threshold > 0),
    used        numeric NOT NULL CHECK (used >= 0),
    allocation  numeric NOT NULL CHECK (allocation > 0),
    projected   numeric NOT NULL CHECK (projected >= used),
    crossed_at  timestamptz NOT NULL,
    UNIQUE (org, period, meter, kind, threshold)
);

CREATE TABLE alert_published (
    alert_id     bigint PRIMARY KEY REFERENCES alert (id),
    stream       text NOT NULL,
    stream_id    text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook (
    version    bigserial PRIMARY KEY,
    id         text NOT NULL CHECK (id ~ '^wh_[0-9a-f]{16}$'),
    url        text NOT NULL CHECK (url ~ '^https?://[^\s]+$'),
    secret     text CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{16,}={0,2}$'),
    enabled    boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (enabled = (secret IS NOT NULL))
);
CREATE INDEX webhook_newest ON webhook (id, version DESC);

CREATE FUNCTION tally_check_webhook_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE known boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM webhook WHERE id = NEW.id AND version <> NEW.version)
      INTO known;
    IF NEW.enabled AND known THEN
        RAISE EXCEPTION 'ledger: webhook % exists; add a new one instead', NEW.id
            USING ERRCODE = 'unique_violation';
    ELSIF NOT NEW.enabled AND NOT known THEN
        RAISE EXCEPTION 'ledger: webhook % does not exist', NEW.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_versions AFTER INSERT ON webhook
    FOR EACH ROW EXECUTE FUNCTION tally_check_webhook_version();

CREATE TABLE usage_total (
    org    text NOT NULL REFERENCES organization (name),
    period text NOT NULL,
    meter  text NOT NULL CHECK (meter IN ('api_request', 'ai_token')),
    used   numeric NOT NULL CHECK (used >= 0),
    PRIMARY KEY (org, period, meter)
);
INSERT INTO usage_total (org, period, meter, used)
SELECT a.owner, a.period, a.unit, sum(l.amount)
  FROM account a JOIN entry_line l ON l.account_id = a.id
 WHERE a.kind = 'usage'
 GROUP BY a.owner, a.period, a.unit;

CREATE FUNCTION tally_usage_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.used < OLD.used
       OR (NEW.org, NEW.period, NEW.meter) IS DISTINCT FROM (OLD.org, OLD.period, OLD.meter) THEN
        RAISE EXCEPTION 'ledger: a running usage total only grows'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER usage_total_grows BEFORE UPDATE OR DELETE ON usage_total
    FOR EACH ROW EXECUTE FUNCTION tally_usage_total_grows();

CREATE TABLE webhook_attempt (
    id           bigserial PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alert (id),
    webhook      text NOT NULL,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    status_code  integer CHECK (status_code BETWEEN 100 AND 599),
    error        text,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    next_at      timestamptz,
    UNIQUE (alert_id, webhook, attempt),
    CHECK (status_code IS NOT NULL OR error IS NOT NULL),
    CHECK (next_at IS NULL OR next_at > attempted_at)
);
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in TABLES:
        refuse_changes(table)
    refuse_truncate("usage_total")


def downgrade() -> None:
    for table in (*TABLES, "usage_total"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tally_check_webhook_version() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tally_usage_total_grows() CASCADE")
