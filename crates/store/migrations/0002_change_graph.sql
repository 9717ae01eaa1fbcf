-- The change graph: commits and reviews from forge webhooks and git mirrors, deploys from the
-- API and from spans, and the webhook deliveries already applied (for idempotency).
-- `repository` is the configured repository's name when the event matched one, otherwise the
-- forge's `owner/name`. Unknown text is NULL, never ''.

CREATE TABLE commits (
    repository TEXT NOT NULL,
    sha TEXT NOT NULL,
    parents TEXT,                 -- space-separated shas; NULL when the source did not list them
    author_name TEXT,
    author_email TEXT,
    author_username TEXT,
    committer_name TEXT,
    committer_email TEXT,
    committer_username TEXT,
    message TEXT NOT NULL,
    time_unix_secs INTEGER,
    url TEXT,
    PRIMARY KEY (repository, sha)
) WITHOUT ROWID;
CREATE INDEX commits_by_sha ON commits (sha);

CREATE TABLE commit_files (
    repository TEXT NOT NULL,
    sha TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,           -- added | removed | modified
    PRIMARY KEY (repository, sha, path)
) WITHOUT ROWID;

CREATE TABLE reviews (
    repository TEXT NOT NULL,
    review_id TEXT NOT NULL,      -- "42", or "D123" for Phabricator
    forge TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT,
    author_name TEXT,
    author_email TEXT,
    author_username TEXT,
    reviewers TEXT NOT NULL,      -- newline-separated
    state TEXT NOT NULL,          -- open | closed | merged
    head_sha TEXT,
    merge_commit_sha TEXT,
    PRIMARY KEY (repository, review_id)
) WITHOUT ROWID;
CREATE INDEX reviews_by_merge_commit ON reviews (merge_commit_sha);

CREATE TABLE review_commits (
    repository TEXT NOT NULL,
    review_id TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repository, review_id, sha)
) WITHOUT ROWID;
CREATE INDEX review_commits_by_sha ON review_commits (sha);

CREATE TABLE deploys (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,    -- '' when the spans name none
    version TEXT NOT NULL,
    commit_sha TEXT,
    repository TEXT,
    started_at_unix_nanos INTEGER NOT NULL,
    finished_at_unix_nanos INTEGER,
    deployer TEXT,
    is_rollback INTEGER NOT NULL,
    url TEXT,
    source TEXT NOT NULL          -- explicit | inferred | explicit+inferred
);
CREATE INDEX deploys_by_service ON deploys (service, environment, started_at_unix_nanos);
CREATE INDEX deploys_by_commit ON deploys (commit_sha);

-- The commit spans report for a version (`vcs.ref.head.revision` and its aliases).
CREATE TABLE version_commits (
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    PRIMARY KEY (service, version)
) WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
    integration TEXT NOT NULL,
    delivery_key TEXT NOT NULL,
    event TEXT NOT NULL,
    received_unix_nanos INTEGER NOT NULL,
    PRIMARY KEY (integration, delivery_key)
) WITHOUT ROWID;
