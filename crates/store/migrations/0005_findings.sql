-- One metric of one operation of one deploy, as detection last judged it.
CREATE TABLE findings (
    id INTEGER PRIMARY KEY,
    deploy_id INTEGER NOT NULL REFERENCES deploys (id),
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    operation TEXT NOT NULL,
    span_kind TEXT NOT NULL,
    metric TEXT NOT NULL,               -- latency_p50 | latency_p95 | latency_p99 | error_rate | new_error_types
    verdict TEXT NOT NULL,              -- regressed | improved | no_change | inconclusive
    status TEXT NOT NULL,               -- open | acknowledged | resolved
    is_final INTEGER NOT NULL,
    look_minutes INTEGER NOT NULL,
    first_seen_unix_nanos INTEGER NOT NULL,  -- when detection first gave the current verdict
    updated_unix_nanos INTEGER NOT NULL,
    status_changed_unix_nanos INTEGER,
    status_by TEXT,                     -- who or what set the status (a person, a later deploy)
    status_note TEXT,
    detail TEXT NOT NULL,               -- JSON written by the server at each look: numbers, intervals
    explanation TEXT,                   -- JSON added once regressed: exemplars, evidence, suspects, rollback
    explained INTEGER NOT NULL DEFAULT 0,  -- 1 once the explanation is complete (else retried)
    baseline_stats BLOB NOT NULL,       -- analysis::WindowStats of the baseline (auto-resolution)
    UNIQUE (deploy_id, operation, span_kind, metric)
);
CREATE INDEX findings_by_service ON findings (service, environment, first_seen_unix_nanos);
CREATE INDEX findings_open ON findings (service, environment, operation, span_kind, metric, verdict, status);

-- How far detection got with each deploy.
CREATE TABLE deploy_evaluations (
    deploy_id INTEGER PRIMARY KEY REFERENCES deploys (id),
    look_minutes INTEGER NOT NULL,
    is_final INTEGER NOT NULL,
    updated_unix_nanos INTEGER NOT NULL
);
