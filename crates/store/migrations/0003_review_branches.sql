-- Gogs pull requests carry no shas, only their head branch: the head comes from pushes to
-- that branch, whichever arrives first.
ALTER TABLE reviews ADD COLUMN head_branch TEXT;
CREATE INDEX reviews_by_head_branch ON reviews (repository, head_branch);

-- The last pushed sha of each branch (deleted branches are removed).
CREATE TABLE branch_heads (
    repository TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repository, branch)
) WITHOUT ROWID;
