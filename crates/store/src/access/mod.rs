//! Identity and access records in the metadata database: API tokens, browser sessions,
//! sign-ins under way, and the hash-chained audit log.
//!
//! [`Accounts`] is a handle to them. The running server gets it from
//! [`SpanStore::accounts`](crate::SpanStore::accounts); the CLI opens one with
//! [`Accounts::open`] (metadata writes are serialised across processes; the CLI holds the
//! data directory's lock around it) or, for commands that only read, with
//! [`Accounts::open_read_only`], so `spanblame audit verify` works beside a running server.
//!
//! The audit chain's key lives in `audit.key` in the data directory (created on first open,
//! mode 0600), outside the database, so whoever can only write the database cannot forge
//! links. Every process sharing one database needs the same key: the database keeps an HMAC
//! of a fixed text under it and refuses a process with another key. Audit records are
//! written durably (SQLite `synchronous = FULL`, a PostgreSQL commit): an acknowledged
//! request's record survives a power loss, like an acknowledged span.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auth::audit::{Anchor, AuditRecord, ChainBreak, ChainVerifier, GENESIS};

pub use self::audit::NewAuditRecord;
use self::audit::{
    AUDIT_KEY_FILE, append_chained, hex, key_check, load_or_create_key, read_anchor, read_audit,
    write_anchor, wrong_key,
};
use crate::metadata::{Metadata, MetadataBackend};
use crate::sql::{Executor, Row, args};
use crate::{StoreError, io_error};

mod audit;

/// A handle to tokens, sessions and the audit log.
#[derive(Clone)]
pub struct Accounts {
    metadata: Arc<Metadata>,
    audit_key: Arc<[u8]>,
    /// `<data_dir>/audit.witness`: the chain's head as last seen, kept outside the database.
    witness: PathBuf,
    /// The line last written there, so an unchanged head costs no file access.
    witnessed: Arc<std::sync::Mutex<Option<String>>>,
}

/// The file, beside the key and outside the database, that remembers the chain's head.
pub(crate) const AUDIT_WITNESS_FILE: &str = "audit.witness";
pub(crate) use audit::AUDIT_KEY_FILE as KEY_FILE;

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

/// An API token as stored (its secret only as a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub prefix: String,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub scopes: Vec<String>,
    pub services: Option<Vec<String>>,
    pub environments: Option<Vec<String>>,
    pub created_unix_nanos: u64,
    pub created_by: String,
    pub expires_unix_nanos: u64,
    pub last_used_unix_nanos: Option<u64>,
    pub revoked_unix_nanos: Option<u64>,
    pub superseded_by: Option<String>,
    pub rotated_from: Option<String>,
}

/// A browser session (the cookie's value only as a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id_sha256: [u8; 32],
    pub principal: String,
    pub csrf_token: String,
    pub id_token: String,
    pub created_unix_nanos: u64,
    pub expires_unix_nanos: u64,
}

/// A sign-in between the redirect to the provider and its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub state_sha256: [u8; 32],
    pub nonce: String,
    pub code_verifier: String,
    pub return_to: String,
    pub expires_unix_nanos: u64,
}

fn join(items: &[String]) -> String {
    items.join(" ")
}

fn split(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// How many audit records a verification reads per query.
const AUDIT_PAGE: i64 = 10_000;

impl Accounts {
    /// Opens the metadata (applying migrations) without the span store: for CLI commands
    /// beside a running server. `data_dir` holds the audit key (and the SQLite database).
    pub fn open(data_dir: &Path, backend: &MetadataBackend) -> Result<Accounts, StoreError> {
        if matches!(backend, MetadataBackend::Sqlite) && !data_dir.join("metadata.sqlite").exists()
        {
            return Err(StoreError::Metadata(format!(
                "`{}` holds no spanblame data (no `metadata.sqlite`); pass the server's `--data-dir`",
                data_dir.display()
            )));
        }
        let metadata = Arc::new(Metadata::open(data_dir, backend)?);
        Accounts::new(metadata, data_dir)
    }

    /// Opens the metadata for reading only (no migration, no key created, nothing written):
    /// `audit verify` and `audit export` beside a running server, which owns the directory.
    pub fn open_read_only(
        data_dir: &Path,
        backend: &MetadataBackend,
    ) -> Result<Accounts, StoreError> {
        if matches!(backend, MetadataBackend::Sqlite) && !data_dir.join("metadata.sqlite").exists()
        {
            return Err(StoreError::Metadata(format!(
                "`{}` holds no spanblame data (no `metadata.sqlite`); pass the server's `--data-dir`",
                data_dir.display()
            )));
        }
        let metadata = Arc::new(Metadata::open_read_only(data_dir, backend)?);
        let path = data_dir.join(AUDIT_KEY_FILE);
        let audit_key: Arc<[u8]> = match std::fs::read(&path) {
            Ok(key) if key.len() >= 32 => key.into(),
            Ok(_) => {
                return Err(StoreError::Metadata(format!(
                    "`{}` is shorter than 32 bytes; restore it from a backup",
                    path.display()
                )));
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let stored: Option<Vec<u8>> = metadata
            .read(|db| db.query_value("SELECT key_check FROM audit_anchor", args![]))?
            .flatten();
        if stored.is_some_and(|stored| stored != key_check(&audit_key)) {
            return Err(wrong_key(&path, &metadata));
        }
        Ok(Accounts::with(metadata, audit_key, data_dir))
    }

    fn with(metadata: Arc<Metadata>, audit_key: Arc<[u8]>, data_dir: &Path) -> Accounts {
        Accounts {
            metadata,
            audit_key,
            witness: data_dir.join(AUDIT_WITNESS_FILE),
            witnessed: Arc::default(),
        }
    }

    /// Loads (or creates) the audit key, and refuses it if the chain was written under
    /// another one.
    pub(crate) fn new(metadata: Arc<Metadata>, data_dir: &Path) -> Result<Accounts, StoreError> {
        let audit_key: Arc<[u8]> = load_or_create_key(data_dir)?.into();
        let check = key_check(&audit_key);
        let matches = metadata.write(|db| {
            let stored: Option<Vec<u8>> =
                db.query_value("SELECT key_check FROM audit_anchor", args![])?.flatten();
            let matches = match stored {
                Some(stored) => stored == check,
                None => {
                    db.execute("UPDATE audit_anchor SET key_check = ?1", args![check])?;
                    true
                }
            };
            // A chain written before anchors were authenticated: authenticate it as it is.
            let mac: Option<Vec<u8>> =
                db.query_value("SELECT anchor_mac FROM audit_anchor", args![])?.flatten();
            if matches && mac.is_none() {
                let (anchor, _) = read_anchor(db)?;
                write_anchor(db, &audit_key, &anchor)?;
            }
            Ok(matches)
        })?;
        if !matches {
            return Err(wrong_key(&data_dir.join(AUDIT_KEY_FILE), &metadata));
        }
        Ok(Accounts::with(metadata, audit_key, data_dir))
    }

    // --- tokens ---

    /// Stores a new token; fails if its prefix is taken (the caller generates another).
    pub fn insert_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.metadata.write(|db| insert_token(db, token))
    }

    pub fn token(&self, prefix: &str) -> Result<Option<StoredToken>, StoreError> {
        self.metadata.read(|db| {
            db.query_opt("SELECT * FROM api_tokens WHERE prefix = ?1", args![prefix])?
                .map(|row| read_token(&row))
                .transpose()
        })
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM api_tokens ORDER BY created_unix_nanos DESC, prefix",
                args![],
                read_token,
            )
        })
    }

    /// Stores `replacement` and lets `prefix` live until `grace_end_unix_nanos` (or its own
    /// earlier expiry), in one transaction. `false` if `prefix` is unknown, revoked or
    /// already rotated.
    pub fn rotate_token(
        &self,
        prefix: &str,
        replacement: &StoredToken,
        grace_end_unix_nanos: u64,
    ) -> Result<bool, StoreError> {
        self.metadata.write(|db| {
            let changed = db.execute(
                "UPDATE api_tokens
                 SET superseded_by = ?2, expires_unix_nanos = least(expires_unix_nanos, ?3)
                 WHERE prefix = ?1 AND revoked_unix_nanos IS NULL AND superseded_by IS NULL",
                args![prefix, replacement.prefix, grace_end_unix_nanos],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            insert_token(db, replacement)?;
            Ok(true)
        })
    }

    /// Revokes a token at `at_unix_nanos`; `false` if it is unknown or already revoked.
    pub fn revoke_token(&self, prefix: &str, at_unix_nanos: u64) -> Result<bool, StoreError> {
        let changed = self.metadata.write(|db| {
            db.execute(
                "UPDATE api_tokens SET revoked_unix_nanos = ?2
                 WHERE prefix = ?1 AND revoked_unix_nanos IS NULL",
                args![prefix, at_unix_nanos],
            )
        })?;
        Ok(changed == 1)
    }

    /// Records when tokens were last used (batched by the server).
    pub fn touch_tokens(&self, used: &[(String, u64)]) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            for (prefix, at) in used {
                db.execute(
                    "UPDATE api_tokens
                     SET last_used_unix_nanos = greatest(last_used_unix_nanos, ?2)
                     WHERE prefix = ?1",
                    args![prefix, at],
                )?;
            }
            Ok(())
        })
    }

    // --- sessions and sign-ins ---

    pub fn insert_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute(
                "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![
                    session.id_sha256,
                    session.principal,
                    session.csrf_token,
                    session.id_token,
                    session.created_unix_nanos,
                    session.expires_unix_nanos
                ],
            )
            .map(|_| ())
        })
    }

    /// The session with this digest, if it has not expired at `now_unix_nanos`.
    pub fn session(
        &self,
        id_sha256: &[u8; 32],
        now_unix_nanos: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        self.metadata.read(|db| {
            let Some(row) = db.query_opt(
                "SELECT principal, csrf_token, id_token, created_unix_nanos, expires_unix_nanos
                 FROM sessions WHERE id_sha256 = ?1 AND expires_unix_nanos > ?2",
                args![id_sha256, now_unix_nanos],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(StoredSession {
                id_sha256: *id_sha256,
                principal: row.get(0)?,
                csrf_token: row.get(1)?,
                id_token: row.get(2)?,
                created_unix_nanos: row.get(3)?,
                expires_unix_nanos: row.get(4)?,
            }))
        })
    }

    pub fn delete_session(&self, id_sha256: &[u8; 32]) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute("DELETE FROM sessions WHERE id_sha256 = ?1", args![id_sha256]).map(|_| ())
        })
    }

    pub fn insert_sign_in(&self, sign_in: &PendingSignIn) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute(
                "INSERT INTO sign_ins VALUES (?1, ?2, ?3, ?4, ?5)",
                args![
                    sign_in.state_sha256,
                    sign_in.nonce,
                    sign_in.code_verifier,
                    sign_in.return_to,
                    sign_in.expires_unix_nanos
                ],
            )
            .map(|_| ())
        })
    }

    /// Removes and returns the sign-in with this `state` digest if it has not expired: a
    /// `state` is good for one callback only.
    pub fn take_sign_in(
        &self,
        state_sha256: &[u8; 32],
        now_unix_nanos: u64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let found = self.metadata.write(|db| {
            let found = db
                .query_opt(
                    "SELECT nonce, code_verifier, return_to, expires_unix_nanos FROM sign_ins
                     WHERE state_sha256 = ?1",
                    args![state_sha256],
                )?
                .map(|row| -> Result<PendingSignIn, StoreError> {
                    Ok(PendingSignIn {
                        state_sha256: *state_sha256,
                        nonce: row.get(0)?,
                        code_verifier: row.get(1)?,
                        return_to: row.get(2)?,
                        expires_unix_nanos: row.get(3)?,
                    })
                })
                .transpose()?;
            db.execute("DELETE FROM sign_ins WHERE state_sha256 = ?1", args![state_sha256])?;
            Ok(found)
        })?;
        Ok(found.filter(|s| s.expires_unix_nanos > now_unix_nanos))
    }

    /// Deletes expired sessions and sign-ins.
    pub fn delete_expired_sessions(&self, now_unix_nanos: u64) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute(
                "DELETE FROM sessions WHERE expires_unix_nanos <= ?1",
                args![now_unix_nanos],
            )?;
            db.execute(
                "DELETE FROM sign_ins WHERE expires_unix_nanos <= ?1",
                args![now_unix_nanos],
            )?;
            Ok(())
        })
    }

    // --- audit ---

    /// Appends records to the chain in one durable transaction; returns their numbers.
    pub fn append_audit(&self, records: &[NewAuditRecord]) -> Result<Vec<u64>, StoreError> {
        // One writer at a time (a CLI or another replica may append too): the anchor read
        // here is the head the new links continue.
        self.metadata.write_durable(|db| append_chained(db, &self.audit_key, records))
    }

    /// Writes the chain's head to the witness file when it moved since the file was written
    /// (the upkeep job calls this every few seconds); `verify_audit` compares the two.
    pub fn write_witness(&self) -> Result<(), StoreError> {
        let (anchor, _) = self.metadata.read(read_anchor)?;
        let Some((seq, link)) = anchor.head else { return Ok(()) };
        let line = format!("{seq} {}\n", hex(&link));
        let mut witnessed = self.witnessed.lock().unwrap_or_else(|p| p.into_inner());
        if witnessed.as_deref() == Some(line.as_str()) {
            return Ok(());
        }
        let temporary = self.witness.with_extension("witness.tmp");
        std::fs::write(&temporary, &line).map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &self.witness).map_err(io_error(&self.witness))?;
        *witnessed = Some(line);
        Ok(())
    }

    /// Records at or after `since_unix_nanos` with a number above `after_seq`, oldest first.
    pub fn audit_records(
        &self,
        since_unix_nanos: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM audit_log WHERE time_unix_nanos >= ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
                args![since_unix_nanos, after_seq, limit.min(i64::MAX as usize) as i64],
                |row| read_audit(row).map(|(record, _, _)| record),
            )
        })
    }

    /// Walks the whole kept chain; `Ok(n)` when its `n` records are intact, else the first
    /// broken record.
    pub fn verify_audit(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        // Appends may continue meanwhile: walk up to the head read first, in pages, then
        // check in one statement that nothing lies beyond the head as it is now.
        // The witness before the anchor: a head written after this read is never behind it.
        let witnessed = std::fs::read_to_string(&self.witness).ok();
        let (anchor, mac) = self.metadata.read(read_anchor)?;
        if mac.as_deref() != Some(auth::audit::anchor_mac(&self.audit_key, &anchor).as_slice()) {
            return Ok(Err(ChainBreak {
                seq: anchor.head.map_or(anchor.first_seq, |(seq, _)| seq),
                problem: "the anchor (where the kept chain starts and ends) was changed without the key: records were deleted from the start or the end".into(),
            }));
        }
        if let Some(broken) = self.check_witness(&anchor, witnessed.as_deref())? {
            return Ok(Err(broken));
        }
        let last = anchor.head.map_or(i64::MAX, |(seq, _)| seq as i64);
        let mut verifier = ChainVerifier::new(&self.audit_key, anchor);
        let mut after: i64 = 0;
        loop {
            let page = self.metadata.read(|db| {
                db.query(
                    "SELECT * FROM audit_log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
                    args![after, last, AUDIT_PAGE],
                )
            })?;
            for row in &page {
                let (record, prev, link) = read_audit(row)?;
                after = record.seq as i64;
                if let Err(broken) = verifier.push(&record, &prev, &link) {
                    return Ok(Err(broken));
                }
            }
            if (page.len() as i64) < AUDIT_PAGE {
                break;
            }
        }
        let checked = match verifier.finish() {
            Ok(checked) => checked,
            Err(broken) => return Ok(Err(broken)),
        };
        let stray: Option<u64> = self
            .metadata
            .read(|db| {
                db.query_value(
                    "SELECT min(seq) FROM audit_log
                     WHERE seq > (SELECT coalesce(head_seq, 0) FROM audit_anchor)",
                    args![],
                )
            })?
            .flatten();
        Ok(match stray {
            Some(seq) => Err(ChainBreak {
                seq,
                problem: "it lies after the chain's head (inserted without the key)".into(),
            }),
            None => Ok(checked),
        })
    }

    /// Compares the anchor's head with the witness file's (when there is one): a head behind
    /// the witness, or a different link at the witness's record, means records were removed
    /// from the end and the anchor rewound (even to an older authenticated anchor).
    fn check_witness(
        &self,
        anchor: &Anchor,
        witnessed: Option<&str>,
    ) -> Result<Option<ChainBreak>, StoreError> {
        let Some(text) = witnessed else { return Ok(None) };
        let mut fields = text.split_whitespace();
        let (Some(Ok(seen_seq)), Some(seen_link)) =
            (fields.next().map(str::parse::<u64>), fields.next())
        else {
            return Ok(Some(ChainBreak {
                seq: 0,
                problem: format!("the witness `{}` is unreadable", self.witness.display()),
            }));
        };
        let head_seq = anchor.head.map_or(0, |(seq, _)| seq);
        if seen_seq > head_seq {
            return Ok(Some(ChainBreak {
                seq: head_seq,
                problem: format!(
                    "the witness `{}` saw record {seen_seq}, but the chain ends at {head_seq}: records were deleted from the end",
                    self.witness.display()
                ),
            }));
        }
        if seen_seq < anchor.first_seq {
            return Ok(None); // Retention removed the witnessed record since.
        }
        let stored: Option<Vec<u8>> = self.metadata.read(|db| {
            db.query_value("SELECT link FROM audit_log WHERE seq = ?1", args![seen_seq as i64])
        })?;
        Ok((stored.map(|link| hex(&link)).as_deref() != Some(seen_link)).then(|| ChainBreak {
            seq: seen_seq,
            problem: format!(
                "record {seen_seq} is not the one the witness `{}` saw: the end of the chain was rewritten",
                self.witness.display()
            ),
        }))
    }

    /// Deletes records older than `cutoff_unix_nanos` and moves the chain's start past them,
    /// so the kept chain still verifies, and records the deletion in the chain itself (so a
    /// start moved without it is a break). Returns how many were deleted.
    pub fn enforce_audit_retention(&self, cutoff_unix_nanos: u64) -> Result<u64, StoreError> {
        let key = Arc::clone(&self.audit_key);
        self.metadata.write(|db| {
            // Records are appended in time order, so the old ones are a prefix of the chain.
            let last_old: Option<i64> = db
                .query_value(
                    "SELECT max(seq) FROM audit_log WHERE time_unix_nanos < ?1",
                    args![cutoff_unix_nanos],
                )?
                .flatten();
            let Some(last_old) = last_old else { return Ok(0) };
            let first_kept = db.query_opt(
                "SELECT seq, prev_link FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT 1",
                args![last_old],
            )?;
            let (first_seq, first_prev): (i64, Vec<u8>) = match first_kept {
                Some(row) => (row.get(0)?, row.get(1)?),
                // Everything is old: the next record continues from the head.
                None => {
                    let (anchor, _) = read_anchor(db)?;
                    let (seq, link) = anchor.head.unwrap_or((last_old as u64, GENESIS));
                    (seq as i64 + 1, link.to_vec())
                }
            };
            let first_deleted: i64 =
                db.query_value("SELECT min(seq) FROM audit_log", args![])?.flatten().unwrap_or(0);
            let deleted = db.execute("DELETE FROM audit_log WHERE seq <= ?1", args![last_old])?;
            let (mut anchor, _) = read_anchor(db)?;
            anchor.first_seq = first_seq as u64;
            anchor.first_prev = <[u8; 32]>::try_from(first_prev.as_slice()).unwrap_or(GENESIS);
            write_anchor(db, &key, &anchor)?;
            append_chained(
                db,
                &key,
                &[NewAuditRecord {
                    time_unix_nanos: cutoff_unix_nanos,
                    principal: "spanblame".to_owned(),
                    action: "audit.retention".to_owned(),
                    resource: String::new(),
                    outcome: format!(
                        "deleted records {first_deleted} to {last_old}, older than the retention"
                    ),
                    client_addr: String::new(),
                    request_id: String::new(),
                }],
            )?;
            Ok(deleted)
        })
    }
}

fn insert_token(db: &mut dyn Executor, token: &StoredToken) -> Result<(), StoreError> {
    let optional = |items: &Option<Vec<String>>| items.as_deref().map(join);
    db.execute(
        "INSERT INTO api_tokens VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        args![
            token.prefix,
            token.name,
            token.secret_sha256,
            join(&token.scopes),
            optional(&token.services),
            optional(&token.environments),
            token.created_unix_nanos,
            token.created_by,
            token.expires_unix_nanos,
            token.last_used_unix_nanos,
            token.revoked_unix_nanos,
            token.superseded_by,
            token.rotated_from,
        ],
    )?;
    Ok(())
}

fn read_token(row: &Row) -> Result<StoredToken, StoreError> {
    Ok(StoredToken {
        prefix: row.get(0)?,
        name: row.get(1)?,
        secret_sha256: row.get(2)?,
        scopes: split(row.get(3)?),
        services: row.get::<Option<String>>(4)?.map(split),
        environments: row.get::<Option<String>>(5)?.map(split),
        created_unix_nanos: row.get(6)?,
        created_by: row.get(7)?,
        expires_unix_nanos: row.get(8)?,
        last_used_unix_nanos: row.get(9)?,
        revoked_unix_nanos: row.get(10)?,
        superseded_by: row.get(11)?,
        rotated_from: row.get(12)?,
    })
}

#[cfg(test)]
mod tests;
