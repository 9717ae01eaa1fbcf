//! The accounts store on SQLite: tokens, sessions, sign-ins and the audit chain.

use super::*;

fn record(n: u64) -> NewAuditRecord {
    NewAuditRecord {
        time_unix_nanos: n * 1_000,
        principal: "alice@example.test".into(),
        action: "trace.read".into(),
        resource: format!("trace/{n}"),
        outcome: "allowed".into(),
        client_addr: "127.0.0.1".into(),
        request_id: format!("req-{n}"),
    }
}

#[test]
fn the_audit_chain_verifies_until_tampered_and_survives_retention_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::SpanStore::open(dir.path(), crate::StoreOptions::default()).unwrap();
        let numbers = store.accounts().append_audit(&[record(1), record(2), record(3)]).unwrap();
        assert_eq!(numbers, [1, 2, 3]);
    }
    let accounts = Accounts::open(dir.path(), &MetadataBackend::Sqlite).unwrap();
    accounts.append_audit(&[record(4), record(5)]).unwrap();
    assert_eq!(accounts.verify_audit().unwrap(), Ok(5));
    assert_eq!(accounts.audit_records(2_000, 0, 10).unwrap().len(), 4);
    assert_eq!(accounts.audit_records(0, 3, 1).unwrap()[0].seq, 4);

    assert_eq!(accounts.enforce_audit_retention(2_500).unwrap(), 2);
    // The three kept records and the one that records the deletion.
    assert_eq!(accounts.verify_audit().unwrap(), Ok(4));
    let last = accounts.audit_records(0, 0, 10).unwrap().pop().unwrap();
    assert_eq!((last.action.as_str(), last.seq), ("audit.retention", 6));
    assert!(last.outcome.contains("deleted records 1 to 2"), "{}", last.outcome);

    accounts
        .metadata
        .write(|db| db.execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 4", &[]))
        .unwrap();
    assert_eq!(accounts.verify_audit().unwrap().unwrap_err().seq, 4);

    // Without the key file nothing opens silently with a different key.
    std::fs::write(dir.path().join(AUDIT_KEY_FILE), b"short").unwrap();
    assert!(Accounts::open(dir.path(), &MetadataBackend::Sqlite).is_err());
    std::fs::write(dir.path().join(AUDIT_KEY_FILE), [7u8; 32]).unwrap();
    let refused = Accounts::open(dir.path(), &MetadataBackend::Sqlite).unwrap_err();
    assert!(refused.to_string().contains("is not the key the audit chain"), "{refused}");
}

/// Issue 20, item 3: truncating the log at either end and moving the anchor to match, or
/// emptying it and resetting the anchor, or rewinding to an older (authentic) anchor.
#[test]
fn truncating_either_end_of_the_audit_log_is_detected() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::SpanStore::open(dir.path(), crate::StoreOptions::default()).unwrap());
        let accounts = Accounts::open(dir.path(), &MetadataBackend::Sqlite).unwrap();
        accounts.append_audit(&(1..=6).map(record).collect::<Vec<_>>()).unwrap();
        assert_eq!(accounts.verify_audit().unwrap(), Ok(6));
        (dir, accounts)
    };
    let tamper = |accounts: &Accounts, sql: &str| {
        accounts
            .metadata
            .write(|db| {
                for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
                    db.execute(statement, args![])?;
                }
                Ok(())
            })
            .unwrap();
    };
    let broken = |accounts: &Accounts| accounts.verify_audit().unwrap().unwrap_err().problem;

    // The newest two deleted, the head moved to the new last record.
    let (_dir, accounts) = fresh();
    tamper(&accounts, "DELETE FROM audit_log WHERE seq > 4;
        UPDATE audit_anchor SET head_seq = 4, head_link = (SELECT link FROM audit_log WHERE seq = 4);");
    assert!(broken(&accounts).contains("changed without the key"));

    // The oldest two deleted, the start moved past them.
    let (_dir, accounts) = fresh();
    tamper(
        &accounts,
        "UPDATE audit_anchor SET first_seq = 3,
          first_prev_link = (SELECT prev_link FROM audit_log WHERE seq = 3);
        DELETE FROM audit_log WHERE seq < 3;",
    );
    assert!(broken(&accounts).contains("changed without the key"));

    // Everything deleted and the anchor reset to a new log's.
    let (_dir, accounts) = fresh();
    tamper(
        &accounts,
        "DELETE FROM audit_log;
        UPDATE audit_anchor SET first_seq = 1, first_prev_link = zeroblob(32), head_seq = NULL,
          head_link = NULL, anchor_mac = NULL;",
    );
    assert!(broken(&accounts).contains("changed without the key"));

    // An authentic older anchor put back after the tail was deleted: the witness saw more.
    let (_dir, accounts) = fresh();
    let saved: Vec<u8> = accounts
        .metadata
        .read(|db| db.query_value("SELECT anchor_mac FROM audit_anchor", args![]))
        .unwrap()
        .unwrap();
    let saved_link: Vec<u8> = accounts
        .metadata
        .read(|db| db.query_value("SELECT head_link FROM audit_anchor", args![]))
        .unwrap()
        .unwrap();
    accounts.append_audit(&[record(7), record(8)]).unwrap();
    accounts.write_witness().unwrap();
    accounts
        .metadata
        .write(|db| {
            db.execute("DELETE FROM audit_log WHERE seq > 6", args![])?;
            db.execute(
                "UPDATE audit_anchor SET head_seq = 6, head_link = ?1, anchor_mac = ?2",
                args![saved_link.clone(), saved.clone()],
            )
        })
        .unwrap();
    let problem = broken(&accounts);
    assert!(problem.contains("saw record 8, but the chain ends at 6"), "{problem}");
}
