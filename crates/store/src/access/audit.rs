//! The audit chain underneath: records linked by an HMAC under the audit key, the anchor that
//! pins where the kept chain starts and ends, and the key file itself.

use std::path::Path;

use auth::audit::{Anchor, AuditRecord, GENESIS};

use crate::metadata::Metadata;
use crate::sql::{Executor, Row, args};
use crate::{StoreError, io_error};

pub(crate) const AUDIT_KEY_FILE: &str = "audit.key";

/// An audit record to append; its sequence number and link are assigned by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    pub time_unix_nanos: u64,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub client_addr: String,
    pub request_id: String,
}

/// The HMAC under the audit key of a fixed record: equal for equal keys, and useless to
/// forge links with.
pub(super) fn key_check(key: &[u8]) -> [u8; 32] {
    let probe = AuditRecord {
        seq: 0,
        time_unix_nanos: 0,
        principal: "spanblame audit key check".into(),
        action: String::new(),
        resource: String::new(),
        outcome: String::new(),
        client_addr: String::new(),
        request_id: String::new(),
    };
    auth::audit::link(key, &GENESIS, &probe)
}

pub(super) fn read_audit(row: &Row) -> Result<(AuditRecord, Vec<u8>, Vec<u8>), StoreError> {
    let record = AuditRecord {
        seq: row.get(0)?,
        time_unix_nanos: row.get(1)?,
        principal: row.get(2)?,
        action: row.get(3)?,
        resource: row.get(4)?,
        outcome: row.get(5)?,
        client_addr: row.get(6)?,
        request_id: row.get(7)?,
    };
    Ok((record, row.get(8)?, row.get(9)?))
}

/// Appends records after the anchor's head and moves the head (and its MAC) past them.
pub(super) fn append_chained(
    db: &mut dyn Executor,
    key: &[u8],
    records: &[NewAuditRecord],
) -> Result<Vec<u64>, StoreError> {
    let (mut anchor, _) = read_anchor(db)?;
    let (mut seq, mut prev) = match anchor.head {
        Some((seq, link)) => (seq, link),
        None => (anchor.first_seq - 1, anchor.first_prev),
    };
    let mut numbers = Vec::with_capacity(records.len());
    for new in records {
        seq += 1;
        let record = AuditRecord {
            seq,
            time_unix_nanos: new.time_unix_nanos,
            principal: new.principal.clone(),
            action: new.action.clone(),
            resource: new.resource.clone(),
            outcome: new.outcome.clone(),
            client_addr: new.client_addr.clone(),
            request_id: new.request_id.clone(),
        };
        let link = auth::audit::link(key, &prev, &record);
        db.execute(
            "INSERT INTO audit_log VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                seq,
                record.time_unix_nanos,
                record.principal,
                record.action,
                record.resource,
                record.outcome,
                record.client_addr,
                record.request_id,
                prev,
                link
            ],
        )?;
        prev = link;
        numbers.push(seq);
    }
    if !records.is_empty() {
        anchor.head = Some((seq, prev));
        write_anchor(db, key, &anchor)?;
    }
    Ok(numbers)
}

/// Writes the anchor with its MAC.
pub(super) fn write_anchor(
    db: &mut dyn Executor,
    key: &[u8],
    anchor: &Anchor,
) -> Result<(), StoreError> {
    let mac = auth::audit::anchor_mac(key, anchor);
    db.execute(
        "UPDATE audit_anchor SET first_seq = ?1, first_prev_link = ?2, head_seq = ?3,
           head_link = ?4, anchor_mac = ?5",
        args![
            anchor.first_seq,
            anchor.first_prev.to_vec(),
            anchor.head.map(|(seq, _)| seq),
            anchor.head.map(|(_, link)| link.to_vec()),
            mac.to_vec()
        ],
    )?;
    Ok(())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The anchor and its stored MAC (`None` before anchors were authenticated).
pub(super) fn read_anchor(db: &mut dyn Executor) -> Result<(Anchor, Option<Vec<u8>>), StoreError> {
    let row = db
        .query_opt(
            "SELECT first_seq, first_prev_link, head_seq, head_link, anchor_mac FROM audit_anchor",
            args![],
        )?
        .ok_or_else(|| StoreError::Metadata("the audit anchor row is missing".into()))?;
    let link = |bytes: Vec<u8>| <[u8; 32]>::try_from(bytes.as_slice()).unwrap_or(GENESIS);
    let head_seq: Option<u64> = row.get(2)?;
    let head_link: Option<Vec<u8>> = row.get(3)?;
    let anchor = Anchor {
        first_seq: row.get(0)?,
        first_prev: link(row.get(1)?),
        head: head_seq.zip(head_link).map(|(seq, l)| (seq, link(l))),
    };
    Ok((anchor, row.get(4)?))
}

pub(super) fn wrong_key(key_path: &Path, metadata: &Metadata) -> StoreError {
    StoreError::Metadata(format!(
        "`{}` is not the key the audit chain in {} was written with; every process sharing the \
         metadata needs the same key: copy `{AUDIT_KEY_FILE}` from the first replica's data \
         directory",
        key_path.display(),
        metadata.describe()
    ))
}

/// The audit chain's key: read from `audit.key`, or created there (0600) on first use.
pub(super) fn load_or_create_key(data_dir: &Path) -> Result<Vec<u8>, StoreError> {
    let path = data_dir.join(AUDIT_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {
            return Err(StoreError::Metadata(format!(
                "`{}` is shorter than 32 bytes; restore it from a backup (the audit chain cannot be verified without it)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&path)(e)),
    }
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| StoreError::Metadata(format!("no random source for the audit key: {e}")))?;
    let temporary = data_dir.join(format!("{AUDIT_KEY_FILE}.tmp"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error(&temporary))?;
        file.write_all(&key).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
    }
    std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io_error(data_dir))?;
    Ok(key)
}
