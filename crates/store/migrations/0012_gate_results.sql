-- The tagging gate's last answer per service and change (a commit, a review, or both), for
-- the commit page and `GET /api/v1/commits/{sha}`. '' stands for no commit (a diff not
-- landed) or no review, so the primary key stays total.
CREATE TABLE gate_results (
    service TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    review_id TEXT NOT NULL,
    source TEXT NOT NULL,               -- api | harbormaster | review: who asked
    outcome TEXT NOT NULL,              -- pass | fail | cannot_tell
    report TEXT NOT NULL,               -- JSON: the checks as the API shows them
    evaluated_unix_nanos INTEGER NOT NULL,
    PRIMARY KEY (service, commit_sha, review_id)
) WITHOUT ROWID;
CREATE INDEX gate_results_by_commit ON gate_results (commit_sha);
