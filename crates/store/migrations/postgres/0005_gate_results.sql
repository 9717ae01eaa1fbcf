-- The tagging gate's last answer per service and change (SQLite's 0012).
CREATE TABLE gate_results (
    service TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    review_id TEXT NOT NULL,
    source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    report TEXT NOT NULL,
    evaluated_unix_nanos BIGINT NOT NULL,
    PRIMARY KEY (service, commit_sha, review_id)
);
CREATE INDEX gate_results_by_commit ON gate_results (commit_sha);
