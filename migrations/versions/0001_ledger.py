"""The ledger: organizations, rate cards, accounts, entries, lines, events, dead letters.

The invariants (README: "Invariants, kept by PostgreSQL itself") live here, in PostgreSQL itself:
- an entry's lines sum to zero per unit (checked per INSERT statement on entry_line, so an
  entry's lines go in one statement), and an entry has at least two lines (at commit);
- posted rows (entries, lines, events, conflicts, duplicates, rate cards) refuse UPDATE,
  DELETE and TRUNCATE;
- idempotency keys, (source, id) event keys and (stream, stream_id) deliveries are unique.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

from tally.adapters.postgres.ddl import refuse_changes, refuse_truncate, run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LANES = 16

UPGRADE = f"""
CREATE TABLE rate_card (
    version        text PRIMARY KEY,
    effective_from timestamptz NOT NULL,
    body           jsonb NOT NULL,
    loaded_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization (
    name       text PRIMARY KEY
               CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}$' AND name <> 'platform'),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account (
    id      bigserial PRIMARY KEY,
    code    text NOT NULL UNIQUE,
    owner   text NOT NULL,
    period  text CHECK (period ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$'),
    unit    text NOT NULL,
    kind    text NOT NULL,
    feature text
);
CREATE INDEX account_owner_period ON account (owner, period);

CREATE TABLE ledger_lane (
    lane      int PRIMARY KEY,
    seq       bigint NOT NULL DEFAULT 0,
    head_hash bytea NOT NULL DEFAULT '\\x{"00" * 32}'
);
INSERT INTO ledger_lane (lane) SELECT generate_series(1, {LANES});

CREATE TABLE journal_entry (
    id                bigserial PRIMARY KEY,
    idempotency_key   text NOT NULL UNIQUE,
    kind              text NOT NULL,
    org               text REFERENCES organization (name),
    period            text,
    rate_card_version text REFERENCES rate_card (version),
    posted_at         timestamptz NOT NULL,
    lane              int NOT NULL REFERENCES ledger_lane (lane),
    seq               bigint NOT NULL,
    prev_hash         bytea NOT NULL,
    hash              bytea NOT NULL,
    UNIQUE (lane, seq)
);
CREATE INDEX journal_entry_org_period ON journal_entry (org, period);

CREATE TABLE entry_line (
    id         bigserial PRIMARY KEY,
    entry_id   bigint NOT NULL REFERENCES journal_entry (id),
    account_id bigint NOT NULL REFERENCES account (id),
    amount     numeric NOT NULL
);
CREATE INDEX entry_line_entry ON entry_line (entry_id);
CREATE INDEX entry_line_account ON entry_line (account_id);

CREATE TABLE usage_event (
    source            text NOT NULL,
    id                text NOT NULL,
    type              text NOT NULL,
    org               text NOT NULL,
    event_time        timestamptz NOT NULL,
    period            text NOT NULL,
    status            text NOT NULL CHECK (status IN ('metered', 'non_billable', 'recorded')),
    meter             text,
    feature           text,
    quantity          numeric NOT NULL CHECK (quantity >= 0),
    rate_card_version text NOT NULL,
    raw               bytea NOT NULL,
    stream            text NOT NULL,
    stream_id         text NOT NULL,
    received_at       timestamptz NOT NULL,
    entry_id          bigint,  -- an existing entry: checked per statement, see below
    PRIMARY KEY (source, id),
    CHECK ((status = 'metered') = (entry_id IS NOT NULL))
);
CREATE INDEX usage_event_entry ON usage_event (entry_id) WHERE entry_id IS NOT NULL;

CREATE TABLE license_usage (
    source     text NOT NULL,
    id         text NOT NULL,
    org        text NOT NULL,
    period     text NOT NULL,
    day        date NOT NULL,
    license    text NOT NULL,
    model      text NOT NULL,
    users      integer CHECK (users >= 0),
    hours      numeric CHECK (hours >= 0),
    PRIMARY KEY (source, id),
    FOREIGN KEY (source, id) REFERENCES usage_event (source, id)
);
CREATE INDEX license_usage_org_period ON license_usage (org, period);

-- Running per-feature AI quantity: the token total of a feature is the conversion of
-- everything used, so the ledger does not depend on how events were batched.
CREATE TABLE meter_total (
    org               text NOT NULL,
    period            text NOT NULL,
    feature           text NOT NULL,
    rate_card_version text NOT NULL,
    quantity          numeric NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (org, period, feature, rate_card_version)
);

CREATE TABLE duplicate_delivery (
    stream      text NOT NULL,
    stream_id   text NOT NULL,
    source      text NOT NULL,
    id          text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (stream, stream_id)
);
CREATE INDEX duplicate_delivery_key ON duplicate_delivery (source, id);

CREATE TABLE event_conflict (
    stream       text NOT NULL,
    stream_id    text NOT NULL,
    source       text NOT NULL,
    id           text NOT NULL,
    raw          bytea NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (stream, stream_id)
);
CREATE INDEX event_conflict_key ON event_conflict (source, id);

CREATE TABLE dead_letter (
    id             bigserial PRIMARY KEY,
    stream         text NOT NULL,
    stream_id      text NOT NULL,
    raw            bytea NOT NULL,
    reason         text NOT NULL,
    code           text NOT NULL,
    source         text,
    event_id       text,
    received_at    timestamptz NOT NULL,
    replayed_at    timestamptz,
    replay_outcome text,
    UNIQUE (stream, stream_id)
);
CREATE INDEX dead_letter_open ON dead_letter (id) WHERE replayed_at IS NULL;
CREATE INDEX dead_letter_key ON dead_letter (source, event_id);

CREATE FUNCTION tally_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused: posted rows are immutable; post a correcting entry',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;

CREATE FUNCTION tally_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    -- lines join only entries posted by this same transaction: a posted entry is closed
    SELECT e.id INTO bad FROM journal_entry e
     WHERE e.id IN (SELECT DISTINCT entry_id FROM new_lines)
       AND e.xmin::text::bigint <> txid_current() % 4294967296
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: entry % is posted; its lines cannot change', bad.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    SELECT l.entry_id, a.unit, sum(l.amount) AS total INTO bad
      FROM entry_line l JOIN account a ON a.id = l.account_id
     WHERE l.entry_id IN (SELECT DISTINCT entry_id FROM new_lines)
     GROUP BY l.entry_id, a.unit
    HAVING sum(l.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: unbalanced entry %: % lines sum to %, not 0',
            bad.entry_id, bad.unit, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tally_check_has_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM entry_line WHERE entry_id = NEW.id) < 2 THEN
        RAISE EXCEPTION 'ledger: entry % has fewer than two lines', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER entry_line_balanced AFTER INSERT ON entry_line
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION tally_check_balanced();
CREATE CONSTRAINT TRIGGER journal_entry_has_lines AFTER INSERT ON journal_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tally_check_has_lines();

-- A metered event points at an existing entry. One set-based check per INSERT or COPY
-- statement instead of a foreign key's per-row lookup (a third of the consumer's
-- throughput). Entries are never deleted, so what exists stays.
CREATE FUNCTION tally_check_event_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    SELECT n.source, n.id, n.entry_id INTO bad FROM new_events n
     WHERE n.entry_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM journal_entry e WHERE e.id = n.entry_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: event (%, %) points at entry %, which does not exist',
            bad.source, bad.id, bad.entry_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_event_entry_exists AFTER INSERT ON usage_event
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT
    EXECUTE FUNCTION tally_check_event_entries();

-- Running AI quantities only grow: the next batch's tokens are computed from them.
CREATE FUNCTION tally_meter_total_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.quantity < OLD.quantity
       OR (NEW.org, NEW.period, NEW.feature, NEW.rate_card_version)
          IS DISTINCT FROM (OLD.org, OLD.period, OLD.feature, OLD.rate_card_version) THEN
        RAISE EXCEPTION 'ledger: a running meter total only grows'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER meter_total_grows BEFORE UPDATE OR DELETE ON meter_total
    FOR EACH ROW EXECUTE FUNCTION tally_meter_total_grows();

CREATE FUNCTION tally_dead_letter_resolve_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.id, NEW.stream, NEW.stream_id, NEW.raw, NEW.reason, NEW.code,
                            NEW.received_at)
        IS DISTINCT FROM (OLD.id, OLD.stream, OLD.stream_id, OLD.raw, OLD.reason, OLD.code,
                          OLD.received_at)
    THEN
    RAISE EXCEPTION 'ledger: a dead letter keeps its bytes and reason; only replays are recorded'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER dead_letter_resolve_only BEFORE UPDATE OR DELETE ON dead_letter
    FOR EACH ROW EXECUTE FUNCTION tally_dead_letter_resolve_only();
"""

IMMUTABLE = (
    "rate_card",
    "organization",
    "account",
    "journal_entry",
    "entry_line",
    "usage_event",
    "license_usage",
    "duplicate_delivery",
    "event_conflict",
)


def upgrade() -> None:
    run_script(UPGRADE)
    for table in IMMUTABLE:
        refuse_changes(table)
    for table in ("dead_letter", "ledger_lane", "meter_total"):
        refuse_truncate(table)


def downgrade() -> None:
    for table in (
        "dead_letter",
        "event_conflict",
        "duplicate_delivery",
        "meter_total",
        "license_usage",
        "usage_event",
        "entry_line",
        "journal_entry",
        "ledger_lane",
        "account",
        "organization",
        "rate_card",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for function in (
        "tally_refuse_change",
        "tally_check_balanced",
        "tally_check_has_lines",
        "tally_dead_letter_resolve_only",
        "tally_meter_total_grows",
        "tally_check_event_entries",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
