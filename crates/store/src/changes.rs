//! The change graph in the embedded metadata store: commits, reviews and deploys, webhook
//! deliveries applied once, and deploys inferred from the catalog.
//!
//! Writes merge rather than overwrite: a value a source does not know (NULL) never erases
//! one another source knew, so a webhook (no parents) and a git mirror (no review) complete
//! each other in either order.

use model::{
    Commit, Deploy, DeploySource, FileChange, FileChangeKind, ForgeKind, Person, Review,
    ReviewState,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::metadata::{Seen, VersionKey};
use crate::{SpanStore, StoreError};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    /// The delivery key was seen before; nothing changed.
    Duplicate,
}

/// A deploy as reported through the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewDeploy {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub commit: Option<String>,
    pub repository: Option<String>,
    pub started_at_unix_nanos: u64,
    pub finished_at_unix_nanos: Option<u64>,
    pub deployer: Option<String>,
    pub is_rollback: bool,
    pub url: Option<String>,
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

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
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
        let mut conn = self.metadata.conn();
        let tx = conn.transaction().map_err(sql)?;
        let inserted = tx
            .execute(
                "INSERT INTO webhook_deliveries VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![integration, delivery_key, event, now_unix_nanos as i64],
            )
            .map_err(sql)?;
        if inserted == 0 {
            return Ok(Applied::Duplicate);
        }
        write_batch(&tx, batch).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Applied::New)
    }

    /// Records commits and reviews without a delivery key (git mirror imports, Conduit).
    pub fn record_changes(&self, batch: &ChangeBatch) -> Result<(), StoreError> {
        let mut conn = self.metadata.conn();
        let tx = conn.transaction().map_err(sql)?;
        write_batch(&tx, batch).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// A commit by full sha or unique prefix (at least 7 hex digits), in any repository.
    /// An ambiguous prefix finds nothing.
    pub fn find_commit(&self, sha: &str) -> Result<Option<StoredCommit>, StoreError> {
        if !model::looks_like_sha(sha) {
            return Ok(None);
        }
        let sha = sha.to_ascii_lowercase();
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT repository, sha FROM commits WHERE sha >= ?1 AND sha < ?1 || 'g' LIMIT 2",
            )
            .map_err(sql)?;
        let found: Vec<(String, String)> = stmt
            .query_map([&sha], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        match found.as_slice() {
            [(repository, full)] => read_commit(&conn, repository, full).map_err(sql),
            _ => Ok(None),
        }
    }

    /// A commit in one repository, by full sha.
    pub fn commit(&self, repository: &str, sha: &str) -> Result<Option<StoredCommit>, StoreError> {
        let conn = self.metadata.conn();
        read_commit(&conn, repository, &sha.to_ascii_lowercase()).map_err(sql)
    }

    /// Reviews that contain `sha`, were merged as `sha`, or have it as their head.
    pub fn reviews_of_commit(&self, sha: &str) -> Result<Vec<StoredReview>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM reviews WHERE merge_commit_sha = ?1 OR head_sha = ?1
                   OR (repository, review_id) IN
                      (SELECT repository, review_id FROM review_commits WHERE sha = ?1)
                 ORDER BY (merge_commit_sha = ?1) DESC, repository, review_id",
            )
            .map_err(sql)?;
        let rows = stmt.query_map([sha], |row| read_review(&conn, row)).map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// A review by its forge id (`"42"`, `"D123"`) in a repository.
    pub fn review(&self, repository: &str, id: &str) -> Result<Option<StoredReview>, StoreError> {
        let conn = self.metadata.conn();
        conn.query_row(
            "SELECT * FROM reviews WHERE repository = ?1 AND review_id = ?2",
            [repository, id],
            |row| read_review(&conn, row),
        )
        .optional()
        .map_err(sql)
    }

    /// Records an explicit deploy. If spans already announced this version (an inferred
    /// deploy that is still the service's latest of that version), the two merge; a repeated
    /// report of the current deploy updates it instead of adding another.
    pub fn record_deploy(&self, deploy: &NewDeploy) -> Result<Deploy, StoreError> {
        let mut conn = self.metadata.conn();
        let tx = conn.transaction().map_err(sql)?;
        let latest: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT id, version, source FROM deploys WHERE service = ?1 AND environment = ?2
                 ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
                [&deploy.service, &deploy.environment],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(sql)?;
        let same_version: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, source FROM deploys
                 WHERE service = ?1 AND environment = ?2 AND version = ?3
                 ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
                [&deploy.service, &deploy.environment, &deploy.version],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
        // Merge when the version's deploy is inferred (spans arrived before CI reported), or
        // when this repeats the report of the deploy that is current.
        let merge_into = match (&same_version, &latest) {
            (Some((id, source)), _) if source == DeploySource::Inferred.as_str() => Some(*id),
            (Some((id, _)), Some((latest_id, _, _))) if id == latest_id => Some(*id),
            _ => None,
        };
        let id = match merge_into {
            Some(id) => {
                let old_start: i64 = tx
                    .query_row(
                        "SELECT started_at_unix_nanos FROM deploys WHERE id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .map_err(sql)?;
                if old_start != deploy.started_at_unix_nanos as i64 {
                    crate::findings::reset_evaluation(&tx, id).map_err(sql)?;
                }
                tx.execute(
                    "UPDATE deploys SET
                       commit_sha = coalesce(?2, commit_sha),
                       repository = coalesce(?3, repository),
                       started_at_unix_nanos = ?4,
                       finished_at_unix_nanos = coalesce(?5, finished_at_unix_nanos),
                       deployer = coalesce(?6, deployer),
                       is_rollback = ?7,
                       url = coalesce(?8, url),
                       source = CASE WHEN source = 'explicit' THEN 'explicit' ELSE ?9 END
                     WHERE id = ?1",
                    params![
                        id,
                        deploy.commit,
                        deploy.repository,
                        deploy.started_at_unix_nanos as i64,
                        deploy.finished_at_unix_nanos.map(|t| t as i64),
                        deploy.deployer,
                        deploy.is_rollback,
                        deploy.url,
                        DeploySource::Merged.as_str(),
                    ],
                )
                .map_err(sql)?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO deploys (service, environment, version, commit_sha, repository,
                       started_at_unix_nanos, finished_at_unix_nanos, deployer, is_rollback, url,
                       source)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        deploy.service,
                        deploy.environment,
                        deploy.version,
                        deploy.commit,
                        deploy.repository,
                        deploy.started_at_unix_nanos as i64,
                        deploy.finished_at_unix_nanos.map(|t| t as i64),
                        deploy.deployer,
                        deploy.is_rollback,
                        deploy.url,
                        DeploySource::Explicit.as_str(),
                    ],
                )
                .map_err(sql)?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(sql)?;
        drop(conn);
        self.deploy(id as u64)?.ok_or_else(|| StoreError::Metadata("deploy vanished".into()))
    }

    /// Deploys newest first, optionally for one service and environment, each with its
    /// predecessor (the deploy of the same service and environment before it).
    pub fn deploys(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deploy>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM deploys
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR environment = ?2)
                 ORDER BY service, environment, started_at_unix_nanos, id",
            )
            .map_err(sql)?;
        let mut deploys: Vec<Deploy> = stmt
            .query_map(params![service, environment], read_deploy)
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        for i in 1..deploys.len() {
            let (before, after) = deploys.split_at_mut(i);
            let (previous, current) = (&before[i - 1], &mut after[0]);
            if previous.service == current.service && previous.environment == current.environment {
                current.previous_id = Some(previous.id);
            }
        }
        deploys.sort_by_key(|d| std::cmp::Reverse((d.started_at_unix_nanos, d.id)));
        deploys.truncate(limit);
        Ok(deploys)
    }

    pub fn deploy(&self, id: u64) -> Result<Option<Deploy>, StoreError> {
        let found = {
            let conn = self.metadata.conn();
            conn.query_row("SELECT * FROM deploys WHERE id = ?1", [id as i64], read_deploy)
                .optional()
                .map_err(sql)?
        };
        let Some(found) = found else { return Ok(None) };
        let siblings = self.deploys(Some(&found.service), Some(&found.environment), usize::MAX)?;
        Ok(siblings.into_iter().find(|d| d.id == id))
    }

    /// The commit that spans of `service` at `version` name, if any did.
    pub fn version_commit(
        &self,
        service: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        self.flush_catalog()?;
        let conn = self.metadata.conn();
        conn.query_row(
            "SELECT commit_sha FROM version_commits WHERE service = ?1 AND version = ?2",
            [service, version],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)
    }
}

/// Inside the catalog transaction: the first spans of a version in a (service, environment)
/// infer its deploy; if CI already reported it, the explicit deploy is marked as seen.
pub(crate) fn infer_deploy(
    tx: &Transaction<'_>,
    key: &VersionKey,
    seen: &Seen,
) -> rusqlite::Result<()> {
    if key.version.is_empty() {
        return Ok(());
    }
    let existing: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, source FROM deploys WHERE service = ?1 AND environment = ?2 AND version = ?3
             ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
            [&key.service, &key.environment, &key.version],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match existing {
        Some((id, source)) if source == DeploySource::Explicit.as_str() => {
            tx.execute(
                "UPDATE deploys SET source = ?2 WHERE id = ?1",
                params![id, DeploySource::Merged.as_str()],
            )?;
        }
        Some(_) => {}
        None => {
            tx.execute(
                "INSERT INTO deploys (service, environment, version, started_at_unix_nanos,
                   is_rollback, source)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![
                    key.service,
                    key.environment,
                    key.version,
                    seen.first_unix_nanos as i64,
                    DeploySource::Inferred.as_str()
                ],
            )?;
        }
    }
    Ok(())
}

fn write_batch(tx: &Transaction<'_>, batch: &ChangeBatch) -> rusqlite::Result<()> {
    let repository = &batch.repository;
    let mut upsert_commit = tx.prepare_cached(
        "INSERT INTO commits VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT DO UPDATE SET
           parents = coalesce(excluded.parents, parents),
           author_name = coalesce(excluded.author_name, author_name),
           author_email = coalesce(excluded.author_email, author_email),
           author_username = coalesce(excluded.author_username, author_username),
           committer_name = coalesce(excluded.committer_name, committer_name),
           committer_email = coalesce(excluded.committer_email, committer_email),
           committer_username = coalesce(excluded.committer_username, committer_username),
           message = CASE WHEN excluded.message = '' THEN message ELSE excluded.message END,
           time_unix_secs = coalesce(excluded.time_unix_secs, time_unix_secs),
           url = coalesce(excluded.url, url)",
    )?;
    let mut upsert_file = tx.prepare_cached(
        "INSERT INTO commit_files VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    )?;
    for commit in &batch.commits {
        let parents = (!commit.parents.is_empty()).then(|| commit.parents.join(" "));
        upsert_commit.execute(params![
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
        ])?;
        for file in &commit.files {
            upsert_file.execute(params![repository, commit.sha, file.path, file.kind.as_str()])?;
        }
    }
    if let Some(head) = &batch.branch_head {
        move_branch(tx, repository, head, &batch.commits)?;
    }
    let mut upsert_review = tx.prepare_cached(
        "INSERT INTO reviews VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT DO UPDATE SET
           title = CASE WHEN excluded.title = '' THEN title ELSE excluded.title END,
           url = coalesce(excluded.url, url),
           author_name = coalesce(excluded.author_name, author_name),
           author_email = coalesce(excluded.author_email, author_email),
           author_username = coalesce(excluded.author_username, author_username),
           reviewers = CASE WHEN excluded.reviewers = '' THEN reviewers ELSE excluded.reviewers END,
           state = excluded.state,
           head_sha = coalesce(excluded.head_sha, head_sha),
           merge_commit_sha = coalesce(excluded.merge_commit_sha, merge_commit_sha),
           head_branch = coalesce(excluded.head_branch, head_branch)",
    )?;
    let mut add_review_commit =
        tx.prepare_cached("INSERT INTO review_commits VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?;
    let mut branch_head =
        tx.prepare_cached("SELECT sha FROM branch_heads WHERE repository = ?1 AND branch = ?2")?;
    for review in &batch.reviews {
        // A review that names only its branch takes the branch's last pushed head.
        let head_sha = match (&review.head_sha, &review.head_branch) {
            (None, Some(branch)) => {
                branch_head.query_row([repository, branch], |row| row.get(0)).optional()?
            }
            (sha, _) => sha.clone(),
        };
        upsert_review.execute(params![
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
        ])?;
        for sha in review.commits.iter().chain(&head_sha) {
            add_review_commit.execute(params![repository, review.id, sha])?;
        }
    }
    Ok(())
}

/// Records a branch's new head, and makes it (and the pushed commits) the head and commits
/// of every open review of that branch.
fn move_branch(
    tx: &Transaction<'_>,
    repository: &str,
    head: &BranchHead,
    pushed: &[Commit],
) -> rusqlite::Result<()> {
    let Some(sha) = &head.sha else {
        tx.execute(
            "DELETE FROM branch_heads WHERE repository = ?1 AND branch = ?2",
            [repository, &head.branch],
        )?;
        return Ok(());
    };
    tx.execute(
        "INSERT INTO branch_heads VALUES (?1, ?2, ?3)
         ON CONFLICT DO UPDATE SET sha = excluded.sha",
        [repository, &head.branch, sha],
    )?;
    let reviews: Vec<String> = tx
        .prepare_cached(
            "SELECT review_id FROM reviews
             WHERE repository = ?1 AND head_branch = ?2 AND state = 'open'",
        )?
        .query_map([repository, &head.branch], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for review in reviews {
        tx.execute(
            "UPDATE reviews SET head_sha = ?3 WHERE repository = ?1 AND review_id = ?2",
            [repository, &review, sha],
        )?;
        let mut add = tx.prepare_cached(
            "INSERT INTO review_commits VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        for commit in pushed.iter().map(|c| &c.sha).chain([sha]) {
            add.execute([repository, &review, commit])?;
        }
    }
    Ok(())
}

fn read_commit(
    conn: &Connection,
    repository: &str,
    sha: &str,
) -> rusqlite::Result<Option<StoredCommit>> {
    let commit = conn
        .query_row(
            "SELECT parents, author_name, author_email, author_username, committer_name,
                    committer_email, committer_username, message, time_unix_secs, url
             FROM commits WHERE repository = ?1 AND sha = ?2",
            [repository, sha],
            |row| {
                let parents: Option<String> = row.get(0)?;
                Ok(Commit {
                    sha: sha.to_owned(),
                    parents: parents
                        .map(|p| p.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    author: Person { name: row.get(1)?, email: row.get(2)?, username: row.get(3)? },
                    committer: Person {
                        name: row.get(4)?,
                        email: row.get(5)?,
                        username: row.get(6)?,
                    },
                    message: row.get(7)?,
                    time_unix_secs: row.get(8)?,
                    url: row.get(9)?,
                    files: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut commit) = commit else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT path, kind FROM commit_files WHERE repository = ?1 AND sha = ?2 ORDER BY path",
    )?;
    let files = stmt.query_map([repository, sha], |row| {
        let kind: String = row.get(1)?;
        Ok(FileChange {
            path: row.get(0)?,
            kind: FileChangeKind::parse(&kind).unwrap_or(FileChangeKind::Modified),
        })
    })?;
    commit.files = files.collect::<Result<_, _>>()?;
    Ok(Some(StoredCommit { repository: repository.to_owned(), commit }))
}

fn read_review(conn: &Connection, row: &Row<'_>) -> rusqlite::Result<StoredReview> {
    let repository: String = row.get("repository")?;
    let id: String = row.get("review_id")?;
    let forge: String = row.get("forge")?;
    let state: String = row.get("state")?;
    let reviewers: String = row.get("reviewers")?;
    let mut stmt = conn.prepare_cached(
        "SELECT sha FROM review_commits WHERE repository = ?1 AND review_id = ?2 ORDER BY sha",
    )?;
    let commits =
        stmt.query_map([&repository, &id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
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

pub(crate) fn read_deploy(row: &Row<'_>) -> rusqlite::Result<Deploy> {
    let source: String = row.get("source")?;
    Ok(Deploy {
        id: row.get::<_, i64>("id")? as u64,
        service: row.get("service")?,
        environment: row.get("environment")?,
        version: row.get("version")?,
        commit: row.get("commit_sha")?,
        repository: row.get("repository")?,
        started_at_unix_nanos: row.get::<_, i64>("started_at_unix_nanos")? as u64,
        finished_at_unix_nanos: row
            .get::<_, Option<i64>>("finished_at_unix_nanos")?
            .map(|t| t as u64),
        deployer: row.get("deployer")?,
        is_rollback: row.get("is_rollback")?,
        url: row.get("url")?,
        source: DeploySource::parse(&source).unwrap_or(DeploySource::Explicit),
        previous_id: None,
    })
}
