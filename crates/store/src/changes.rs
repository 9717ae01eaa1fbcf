//! The change graph in the metadata database: commits and reviews, and webhook deliveries
//! applied once. Deploys are in `deploys`.
//!
//! Writes merge rather than overwrite: a value a source does not know (NULL) never erases
//! one another source knew, so a webhook (no parents) and a git mirror (no review) complete
//! each other in either order.

use crate::sql::{Executor, Row, args};
use crate::{SpanStore, StoreError};
use model::{Commit, FileChange, FileChangeKind, ForgeKind, Person, Review, ReviewState};

/// What one webhook delivery adds to the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The configured repository's name, or the forge's `owner/name`.
    pub repository: String,
    pub commits: Vec<Commit>,
    pub reviews: Vec<Review>,
    /// A push moved (or deleted) this branch.
    pub branch_head: Option<BranchHead>,
}

/// A branch's new head after a push: open reviews of that branch take it as their head and
/// the pushed commits as theirs (Gogs pull requests name only their branch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchHead {
    /// Without `refs/heads/`.
    pub branch: String,
    /// `None` when the push deleted the branch.
    pub sha: Option<String>,
    /// A force push may move the branch back to a commit it was at before; any other push
    /// to an earlier head is a replayed or late delivery and does not move it.
    pub forced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    /// The delivery key was seen before; nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCommit {
    pub repository: String,
    pub commit: Commit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReview {
    pub repository: String,
    pub review: Review,
}

impl SpanStore {
    /// Applies one verified webhook delivery atomically: if `delivery_key` was applied before,
    /// nothing changes and `Applied::Duplicate` is returned.
    pub fn apply_webhook(
        &self,
        integration: &str,
        delivery_key: &str,
        event: &str,
        batch: &ChangeBatch,
        now_unix_nanos: u64,
    ) -> Result<Applied, StoreError> {
        self.metadata.write(|db| {
            let inserted = db.execute(
                "INSERT INTO webhook_deliveries VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                args![integration, delivery_key, event, now_unix_nanos],
            )?;
            if inserted == 0 {
                return Ok(Applied::Duplicate);
            }
            write_batch(db, batch)?;
            Ok(Applied::New)
        })
    }

    /// Whether a delivery with this key was applied already: checked before work a
    /// redelivery would repeat (following a Herald pointer through Conduit).
    pub fn webhook_applied(
        &self,
        integration: &str,
        delivery_key: &str,
    ) -> Result<bool, StoreError> {
        self.metadata.read(|db| {
            let found: Option<i64> = db.query_value(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE integration = ?1 AND delivery_key = ?2",
                args![integration, delivery_key],
            )?;
            Ok(found.unwrap_or(0) > 0)
        })
    }

    /// Records commits and reviews without a delivery key (git mirror imports, Conduit).
    pub fn record_changes(&self, batch: &ChangeBatch) -> Result<(), StoreError> {
        self.metadata.write(|db| write_batch(db, batch))
    }

    /// A commit by full sha or unique prefix (at least 7 hex digits), in any repository.
    /// An ambiguous prefix finds nothing.
    pub fn find_commit(&self, sha: &str) -> Result<Option<StoredCommit>, StoreError> {
        if !model::looks_like_sha(sha) {
            return Ok(None);
        }
        let sha = sha.to_ascii_lowercase();
        self.metadata.read(|db| {
            let found = db.query(
                "SELECT repository, sha FROM commits WHERE sha >= ?1 AND sha < ?2 LIMIT 2",
                args![sha, format!("{sha}g")],
            )?;
            match found.as_slice() {
                [row] => read_commit(db, &row.get::<String>(0)?, &row.get::<String>(1)?),
                _ => Ok(None),
            }
        })
    }

    /// [`Store::find_commit`], looking in `repository` first: a commit that several configured
    /// repositories hold (a fork and its upstream, two names for one repository) is the one of
    /// the repository the caller's service is built from; elsewhere only when it is unique.
    pub fn find_commit_in(
        &self,
        repository: Option<&str>,
        sha: &str,
    ) -> Result<Option<StoredCommit>, StoreError> {
        let Some(repository) = repository.filter(|_| model::looks_like_sha(sha)) else {
            return self.find_commit(sha);
        };
        let sha = sha.to_ascii_lowercase();
        let own = self.metadata.read(|db| {
            let found = db.query(
                "SELECT sha FROM commits WHERE repository = ?1 AND sha >= ?2 AND sha < ?3 LIMIT 2",
                args![repository, sha.clone(), format!("{sha}g")],
            )?;
            match found.as_slice() {
                [row] => read_commit(db, repository, &row.get::<String>(0)?),
                _ => Ok(None),
            }
        })?;
        match own {
            Some(found) => Ok(Some(found)),
            None => self.find_commit(&sha),
        }
    }

    /// A commit in one repository, by full sha.
    pub fn commit(&self, repository: &str, sha: &str) -> Result<Option<StoredCommit>, StoreError> {
        self.metadata.read(|db| read_commit(db, repository, &sha.to_ascii_lowercase()))
    }

    /// Reviews that contain `sha`, were merged as `sha`, or have it as their head.
    pub fn reviews_of_commit(&self, sha: &str) -> Result<Vec<StoredReview>, StoreError> {
        self.metadata.read(|db| {
            let rows = db.query(
                "SELECT * FROM reviews WHERE merge_commit_sha = ?1 OR head_sha = ?1
                   OR (repository, review_id) IN
                      (SELECT repository, review_id FROM review_commits WHERE sha = ?1)
                 ORDER BY CASE WHEN merge_commit_sha = ?1 THEN 0 ELSE 1 END, repository, review_id",
                args![sha],
            )?;
            rows.iter().map(|row| read_review(db, row)).collect()
        })
    }

    /// A review by its forge id (`"42"`, `"D123"`) in a repository.
    pub fn review(&self, repository: &str, id: &str) -> Result<Option<StoredReview>, StoreError> {
        self.metadata.read(|db| {
            let row = db.query_opt(
                "SELECT * FROM reviews WHERE repository = ?1 AND review_id = ?2",
                args![repository, id],
            )?;
            row.map(|row| read_review(db, &row)).transpose()
        })
    }

    /// The commit that spans of `service` at `version` name, if any did.
    pub fn version_commit(
        &self,
        service: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        self.flush_catalog()?;
        self.metadata.read(|db| {
            db.query_value(
                "SELECT commit_sha FROM version_commits WHERE service = ?1 AND version = ?2",
                args![service, version],
            )
        })
    }

    /// The versions of `service` whose spans name `commit` (full or abbreviated either
    /// way), those last seen in `environment` first, then the newest.
    pub fn versions_of_commit(
        &self,
        service: &str,
        environment: &str,
        commit: &str,
    ) -> Result<Vec<String>, StoreError> {
        if !model::looks_like_sha(commit) {
            return Ok(Vec::new());
        }
        let commit = commit.to_ascii_lowercase();
        self.flush_catalog()?;
        let rows = self.metadata.read(|db| {
            db.query(
                "SELECT c.version, max(CASE WHEN v.environment = ?3 THEN 1 ELSE 0 END) AS here,
                        max(coalesce(v.last_seen_unix_nanos, 0)) AS seen
                 FROM version_commits c
                 LEFT JOIN service_versions v ON v.service = c.service AND v.version = c.version
                 WHERE c.service = ?1
                   AND (c.commit_sha = ?2 OR c.commit_sha LIKE ?2 || '%'
                        OR ?2 LIKE c.commit_sha || '%')
                 GROUP BY c.version
                 ORDER BY here DESC, seen DESC, c.version",
                args![service, commit, environment],
            )
        })?;
        rows.iter().map(|row| row.get::<String>(0)).collect()
    }
}

fn write_batch(db: &mut dyn Executor, batch: &ChangeBatch) -> Result<(), StoreError> {
    let repository = &batch.repository;
    for commit in &batch.commits {
        let parents = (!commit.parents.is_empty()).then(|| commit.parents.join(" "));
        db.execute(
            "INSERT INTO commits VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (repository, sha) DO UPDATE SET
               parents = coalesce(excluded.parents, commits.parents),
               author_name = coalesce(excluded.author_name, commits.author_name),
               author_email = coalesce(excluded.author_email, commits.author_email),
               author_username = coalesce(excluded.author_username, commits.author_username),
               committer_name = coalesce(excluded.committer_name, commits.committer_name),
               committer_email = coalesce(excluded.committer_email, commits.committer_email),
               committer_username = coalesce(excluded.committer_username, commits.committer_username),
               message = CASE WHEN excluded.message = '' THEN commits.message ELSE excluded.message END,
               time_unix_secs = coalesce(excluded.time_unix_secs, commits.time_unix_secs),
               url = coalesce(excluded.url, commits.url)",
            args![
                repository,
                commit.sha,
                parents,
                commit.author.name,
                commit.author.email,
                commit.author.username,
                commit.committer.name,
                commit.committer.email,
                commit.committer.username,
                commit.message,
                commit.time_unix_secs,
                commit.url,
            ],
        )?;
        for file in &commit.files {
            db.execute(
                "INSERT INTO commit_files VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                args![repository, commit.sha, file.path, file.kind.as_str()],
            )?;
        }
    }
    if let Some(head) = &batch.branch_head {
        move_branch(db, repository, head, &batch.commits)?;
    }
    for review in &batch.reviews {
        // A review that names only its branch takes the branch's last pushed head.
        let head_sha = match (&review.head_sha, &review.head_branch) {
            (None, Some(branch)) => db.query_value(
                "SELECT sha FROM branch_heads WHERE repository = ?1 AND branch = ?2",
                args![repository, branch],
            )?,
            (sha, _) => sha.clone(),
        };
        db.execute(
            "INSERT INTO reviews VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (repository, review_id) DO UPDATE SET
               title = CASE WHEN excluded.title = '' THEN reviews.title ELSE excluded.title END,
               url = coalesce(excluded.url, reviews.url),
               author_name = coalesce(excluded.author_name, reviews.author_name),
               author_email = coalesce(excluded.author_email, reviews.author_email),
               author_username = coalesce(excluded.author_username, reviews.author_username),
               reviewers = CASE WHEN excluded.reviewers = '' THEN reviews.reviewers
                 ELSE excluded.reviewers END,
               state = excluded.state,
               head_sha = coalesce(excluded.head_sha, reviews.head_sha),
               merge_commit_sha = coalesce(excluded.merge_commit_sha, reviews.merge_commit_sha),
               head_branch = coalesce(excluded.head_branch, reviews.head_branch)",
            args![
                repository,
                review.id,
                review.kind.as_str(),
                review.title,
                review.url,
                review.author.name,
                review.author.email,
                review.author.username,
                review.reviewers.join("\n"),
                review.state.as_str(),
                head_sha,
                review.merge_commit_sha,
                review.head_branch,
            ],
        )?;
        for sha in review.commits.iter().chain(&head_sha) {
            db.execute(
                "INSERT INTO review_commits VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![repository, review.id, sha],
            )?;
        }
    }
    Ok(())
}

/// Records a branch's new head, and makes it (and the pushed commits) the head and commits
/// of every open review of that branch.
fn move_branch(
    db: &mut dyn Executor,
    repository: &str,
    head: &BranchHead,
    pushed: &[Commit],
) -> Result<(), StoreError> {
    let forget_history = |db: &mut dyn Executor| {
        db.execute(
            "DELETE FROM branch_head_history WHERE repository = ?1 AND branch = ?2",
            args![repository, head.branch],
        )
    };
    let Some(sha) = &head.sha else {
        db.execute(
            "DELETE FROM branch_heads WHERE repository = ?1 AND branch = ?2",
            args![repository, head.branch],
        )?;
        forget_history(db)?;
        return Ok(());
    };
    if head.forced {
        // The branch's history was rewritten: it starts again from here.
        forget_history(db)?;
    } else {
        let current: Option<String> = db.query_value(
            "SELECT sha FROM branch_heads WHERE repository = ?1 AND branch = ?2",
            args![repository, head.branch],
        )?;
        let was_head: Option<i64> = db.query_value(
            "SELECT 1 FROM branch_head_history WHERE repository = ?1 AND branch = ?2 AND sha = ?3",
            args![repository, head.branch, sha],
        )?;
        if was_head.is_some() && current.as_deref() != Some(sha.as_str()) {
            tracing::warn!(repository, branch = %head.branch, sha = %sha,
                "a push would move the branch back to an earlier head without forcing (a replayed or late delivery); the head stays");
            return Ok(());
        }
    }
    db.execute(
        "INSERT INTO branch_heads VALUES (?1, ?2, ?3)
         ON CONFLICT (repository, branch) DO UPDATE SET sha = excluded.sha",
        args![repository, head.branch, sha],
    )?;
    db.execute(
        "INSERT INTO branch_head_history VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        args![repository, head.branch, sha],
    )?;
    let reviews: Vec<String> = db.query_map(
        "SELECT review_id FROM reviews
         WHERE repository = ?1 AND head_branch = ?2 AND state = 'open'",
        args![repository, head.branch],
        |row| row.get(0),
    )?;
    for review in reviews {
        db.execute(
            "UPDATE reviews SET head_sha = ?3 WHERE repository = ?1 AND review_id = ?2",
            args![repository, review, sha],
        )?;
        for commit in pushed.iter().map(|c| &c.sha).chain([sha]) {
            db.execute(
                "INSERT INTO review_commits VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![repository, review, commit],
            )?;
        }
    }
    Ok(())
}

fn read_commit(
    db: &mut dyn Executor,
    repository: &str,
    sha: &str,
) -> Result<Option<StoredCommit>, StoreError> {
    let Some(row) = db.query_opt(
        "SELECT parents, author_name, author_email, author_username, committer_name,
                committer_email, committer_username, message, time_unix_secs, url
         FROM commits WHERE repository = ?1 AND sha = ?2",
        args![repository, sha],
    )?
    else {
        return Ok(None);
    };
    let parents: Option<String> = row.get(0)?;
    let files = db.query_map(
        "SELECT path, kind FROM commit_files WHERE repository = ?1 AND sha = ?2 ORDER BY path",
        args![repository, sha],
        |row| {
            let kind: String = row.get(1)?;
            Ok(FileChange {
                path: row.get(0)?,
                kind: FileChangeKind::parse(&kind).unwrap_or(FileChangeKind::Modified),
            })
        },
    )?;
    let commit = Commit {
        sha: sha.to_owned(),
        parents: parents
            .map(|p| p.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        author: Person { name: row.get(1)?, email: row.get(2)?, username: row.get(3)? },
        committer: Person { name: row.get(4)?, email: row.get(5)?, username: row.get(6)? },
        message: row.get(7)?,
        time_unix_secs: row.get(8)?,
        url: row.get(9)?,
        files,
    };
    Ok(Some(StoredCommit { repository: repository.to_owned(), commit }))
}

fn read_review(db: &mut dyn Executor, row: &Row) -> Result<StoredReview, StoreError> {
    let repository: String = row.get("repository")?;
    let id: String = row.get("review_id")?;
    let forge: String = row.get("forge")?;
    let state: String = row.get("state")?;
    let reviewers: String = row.get("reviewers")?;
    let commits: Vec<String> = db.query_map(
        "SELECT sha FROM review_commits WHERE repository = ?1 AND review_id = ?2 ORDER BY sha",
        args![repository, id],
        |r| r.get(0),
    )?;
    Ok(StoredReview {
        review: Review {
            kind: ForgeKind::parse(&forge).unwrap_or(ForgeKind::Github),
            id,
            title: row.get("title")?,
            url: row.get("url")?,
            author: Person {
                name: row.get("author_name")?,
                email: row.get("author_email")?,
                username: row.get("author_username")?,
            },
            reviewers: reviewers.lines().map(str::to_owned).collect(),
            state: ReviewState::parse(&state).unwrap_or(ReviewState::Open),
            head_branch: row.get("head_branch")?,
            head_sha: row.get("head_sha")?,
            merge_commit_sha: row.get("merge_commit_sha")?,
            commits,
        },
        repository,
    })
}
