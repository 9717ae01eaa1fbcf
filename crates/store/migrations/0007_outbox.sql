-- Notifications waiting for, or done with, delivery (review comments, commit statuses,
-- alerts), and finding ids that are never reused: an outbox row names its finding by id, so
-- a finding deleted by a deploy reset must not lend its id to a new one.

CREATE TABLE findings_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id INTEGER NOT NULL REFERENCES deploys (id),
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    operation TEXT NOT NULL,
    span_kind TEXT NOT NULL,
    metric TEXT NOT NULL,
    verdict TEXT NOT NULL,
    status TEXT NOT NULL,
    is_final INTEGER NOT NULL,
    look_minutes INTEGER NOT NULL,
    first_seen_unix_nanos INTEGER NOT NULL,
    updated_unix_nanos INTEGER NOT NULL,
    status_changed_unix_nanos INTEGER,
    status_by TEXT,
    status_note TEXT,
    detail TEXT NOT NULL,
    explanation TEXT,
    explained INTEGER NOT NULL DEFAULT 0,
    baseline_stats BLOB NOT NULL,
    UNIQUE (deploy_id, operation, span_kind, metric)
);
INSERT INTO findings_v2 SELECT * FROM findings;
DROP TABLE findings;
ALTER TABLE findings_v2 RENAME TO findings;
CREATE INDEX findings_by_service ON findings (service, environment, first_seen_unix_nanos);
CREATE INDEX findings_open ON findings (service, environment, operation, span_kind, metric, verdict, status);
-- AUTOINCREMENT continues above the largest id ever used, including rows deleted before now.
INSERT OR REPLACE INTO sqlite_sequence (name, seq)
    SELECT 'findings', COALESCE(MAX(id), 0) FROM findings;

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- One row per notification ever decided: a second decision with the same key is ignored,
    -- so a state change is announced once per receiver and target, across restarts.
    idempotency_key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,                 -- the configured receiver: `alertmanager:<name>`, `webhook:<name>`, `forge:<integration>`
    kind TEXT NOT NULL,                 -- alert | comment | status
    finding_id INTEGER,                 -- the finding it announces (an alert), or the first one (a comment)
    deploy_id INTEGER,
    target TEXT NOT NULL,               -- what it lands on, for people: `PR #42`, `D123`, `commit 1a2b3c4`, the alert name
    summary TEXT NOT NULL,
    request TEXT NOT NULL,              -- JSON: method, path under the receiver's base URL, content type, body; never a secret
    state TEXT NOT NULL,                -- pending | delivered | dead | superseded
    attempts INTEGER NOT NULL DEFAULT 0,
    created_unix_nanos INTEGER NOT NULL,
    next_attempt_unix_nanos INTEGER NOT NULL,
    finished_unix_nanos INTEGER,
    last_status INTEGER,                -- the receiver's HTTP status at the last attempt
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_unix_nanos);
CREATE INDEX outbox_by_finding ON outbox (finding_id);
CREATE INDEX outbox_by_deploy ON outbox (deploy_id);
