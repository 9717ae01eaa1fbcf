//! The audit chain: each record's link is an HMAC-SHA256, under a key kept outside the
//! database, of the previous link and the record's fields. Editing, inserting, deleting or
//! reordering a record breaks the chain at that record; without the key, a forger cannot
//! compute new links (a plain hash chain could be recomputed by anyone who can write the
//! table). [`ChainVerifier`] walks the records in order and names the first broken one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The link before the first record ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// One audit record: who did what to which resource, when, from where, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub time_unix_nanos: u64,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub client_addr: String,
    pub request_id: String,
}

impl AuditRecord {
    /// The record as exported (API and JSON Lines), with its time already formatted.
    pub fn to_json(&self, time_rfc3339: String) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq,
            "time": time_rfc3339,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "client_addr": self.client_addr,
            "request_id": self.request_id,
        })
    }
}

/// The link of `record` after `prev`. Every field is length-prefixed so no two different
/// records encode alike.
pub fn link(key: &[u8], prev: &[u8; 32], record: &AuditRecord) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("INVARIANT: HMAC takes keys of any length");
    mac.update(prev);
    mac.update(&record.seq.to_be_bytes());
    mac.update(&record.time_unix_nanos.to_be_bytes());
    for field in [
        &record.principal,
        &record.action,
        &record.resource,
        &record.outcome,
        &record.client_addr,
        &record.request_id,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// The MAC that authenticates an anchor: without the key, nobody can move where the chain
/// starts or ends (deleting records from either end and moving the anchor to match).
pub fn anchor_mac(key: &[u8], anchor: &Anchor) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("INVARIANT: HMAC takes keys of any length");
    mac.update(b"spanblame audit anchor v1");
    mac.update(&anchor.first_seq.to_be_bytes());
    mac.update(&anchor.first_prev);
    match anchor.head {
        Some((seq, link)) => {
            mac.update(&[1]);
            mac.update(&seq.to_be_bytes());
            mac.update(&link);
        }
        None => mac.update(&[0]),
    }
    mac.finalize().into_bytes().into()
}

/// Where the kept chain starts (after retention removed older records) and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub first_seq: u64,
    /// The link before `first_seq` ([`GENESIS`] when nothing was ever removed).
    pub first_prev: [u8; 32],
    /// The last record written and its link; `None` when none was.
    pub head: Option<(u64, [u8; 32])>,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {problem}")]
pub struct ChainBreak {
    pub seq: u64,
    pub problem: String,
}

/// Checks stored records in `seq` order against the anchor and the key.
pub struct ChainVerifier<'k> {
    key: &'k [u8],
    anchor: Anchor,
    expected_seq: u64,
    prev: [u8; 32],
    checked: u64,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: &'k [u8], anchor: Anchor) -> ChainVerifier<'k> {
        ChainVerifier {
            key,
            expected_seq: anchor.first_seq,
            prev: anchor.first_prev,
            anchor,
            checked: 0,
        }
    }

    /// One stored record with its stored previous link and link.
    pub fn push(
        &mut self,
        record: &AuditRecord,
        stored_prev: &[u8],
        stored_link: &[u8],
    ) -> Result<(), ChainBreak> {
        let seq = record.seq;
        let broken = |problem: String| Err(ChainBreak { seq, problem });
        if seq < self.expected_seq {
            return broken(format!(
                "out of order or duplicated (expected record {})",
                self.expected_seq
            ));
        }
        if seq > self.expected_seq {
            return broken(format!(
                "records {} to {} are missing (deleted)",
                self.expected_seq,
                seq - 1
            ));
        }
        if stored_prev != self.prev {
            return broken("its previous link does not match the record before it (a record was deleted or inserted)".into());
        }
        if stored_link != link(self.key, &self.prev, record) {
            return broken("its content does not match its link (the record was edited, or inserted without the key)".into());
        }
        self.prev = link(self.key, &self.prev, record);
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the chain must end where the anchor says it ends.
    pub fn finish(self) -> Result<u64, ChainBreak> {
        match self.anchor.head {
            None if self.checked == 0 => Ok(0),
            None => Err(ChainBreak {
                seq: self.expected_seq - 1,
                problem: "records exist but the chain's head was never written (inserted)".into(),
            }),
            Some((head_seq, head_link)) => {
                let last = self.expected_seq.saturating_sub(1);
                if head_seq >= self.expected_seq {
                    Err(ChainBreak {
                        seq: self.expected_seq,
                        problem: format!(
                            "records {} to {head_seq} are missing (deleted from the end)",
                            self.expected_seq
                        ),
                    })
                } else if head_seq < last || head_link != self.prev {
                    Err(ChainBreak {
                        seq: last,
                        problem: format!(
                            "the chain's head is record {head_seq}, but it goes on to {last} (inserted at the end)"
                        ),
                    })
                } else {
                    Ok(self.checked)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"audit-key-for-tests";

    fn record(seq: u64) -> AuditRecord {
        AuditRecord {
            seq,
            time_unix_nanos: 1_000 + seq,
            principal: "alice@example.test".into(),
            action: "trace.read".into(),
            resource: format!("trace/{seq}"),
            outcome: "allowed".into(),
            client_addr: "127.0.0.1".into(),
            request_id: format!("r{seq}"),
        }
    }

    /// A stored record: (record, previous link, link).
    type Row = (AuditRecord, [u8; 32], [u8; 32]);

    /// Records 1..=n as stored.
    fn chain(n: u64) -> (Vec<Row>, Anchor) {
        let mut prev = GENESIS;
        let mut rows = Vec::new();
        for seq in 1..=n {
            let r = record(seq);
            let l = link(KEY, &prev, &r);
            rows.push((r, prev, l));
            prev = l;
        }
        let head = rows.last().map(|(r, _, l)| (r.seq, *l));
        (rows, Anchor { first_seq: 1, first_prev: GENESIS, head })
    }

    fn verify(rows: &[Row], anchor: Anchor) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new(KEY, anchor);
        for (r, p, l) in rows {
            v.push(r, p, l)?;
        }
        v.finish()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (rows, anchor) = chain(5);
        assert_eq!(verify(&rows, anchor), Ok(5));
        assert_eq!(verify(&[], Anchor { first_seq: 1, first_prev: GENESIS, head: None }), Ok(0));
    }

    #[test]
    fn every_kind_of_tampering_names_its_record() {
        let (rows, anchor) = chain(5);
        let mut edited = rows.clone();
        edited[2].0.outcome = "denied".into();
        assert_eq!(verify(&edited, anchor.clone()).unwrap_err().seq, 3);

        let mut deleted = rows.clone();
        deleted.remove(1);
        let err = verify(&deleted, anchor.clone()).unwrap_err();
        assert_eq!((err.seq, err.problem.contains("missing")), (3, true));

        // Deleting a record and renumbering the rest to hide the gap.
        let mut renumbered = rows.clone();
        renumbered.remove(1);
        for row in &mut renumbered[1..] {
            row.0.seq -= 1;
        }
        assert_eq!(verify(&renumbered, anchor.clone()).unwrap_err().seq, 2);

        let mut inserted = rows.clone();
        let mut fake = record(6);
        fake.action = "token.create".into();
        inserted.push((fake, rows[4].2, [7; 32]));
        assert_eq!(verify(&inserted, anchor.clone()).unwrap_err().seq, 6);

        let mut truncated = rows.clone();
        truncated.pop();
        assert_eq!(verify(&truncated, anchor).unwrap_err().seq, 5);

        // A different key cannot produce valid links.
        let mut v =
            ChainVerifier::new(b"other", Anchor { first_seq: 1, first_prev: GENESIS, head: None });
        assert_eq!(v.push(&rows[0].0, &rows[0].1, &rows[0].2).unwrap_err().seq, 1);
    }

    #[test]
    fn a_chain_cut_by_retention_verifies_from_its_anchor() {
        let (rows, anchor) = chain(5);
        let kept = &rows[2..];
        let cut = Anchor { first_seq: 3, first_prev: rows[2].1, head: anchor.head };
        assert_eq!(verify(kept, cut), Ok(3));
    }
}
