-- Every head a branch has been at, so a replayed or late push delivery cannot move it back
-- (a force push still can).
CREATE TABLE branch_head_history (
    repository TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repository, branch, sha)
);
INSERT INTO branch_head_history SELECT repository, branch, sha FROM branch_heads;
