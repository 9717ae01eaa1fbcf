//! Leases in the metadata database: background work that must happen in one place at a time
//! across a fleet (detection, retention, commit import, notification delivery) is done by
//! whichever process holds its lease.
//!
//! A lease is a row (name, holder, expiry). Taking it succeeds when nobody holds it, when
//! its holder is the caller (a renewal), or when it has expired; one conditional upsert
//! decides, under the metadata write lock, so two processes never both succeed. A holder
//! that dies stops renewing and the lease falls to another process once it expires. Expiry
//! is judged by the callers' clocks, so replicas need synchronised clocks (NTP) to well
//! within the lease's duration.

use crate::sql::args;
use crate::{SpanStore, StoreError};

impl SpanStore {
    /// Takes or renews lease `name` for `holder` until `now + duration`; returns whether
    /// `holder` holds it now.
    pub fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_unix_nanos: u64,
        duration_nanos: u64,
    ) -> Result<bool, StoreError> {
        let expires = now_unix_nanos.saturating_add(duration_nanos);
        let changed = self.metadata.write(|db| {
            db.execute(
                "INSERT INTO leases VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET
                   holder = excluded.holder, expires_unix_nanos = excluded.expires_unix_nanos
                 WHERE leases.holder = excluded.holder OR leases.expires_unix_nanos <= ?4",
                args![name, holder, expires, now_unix_nanos],
            )
        })?;
        Ok(changed == 1)
    }

    /// Gives lease `name` up if `holder` holds it (on shutdown), so another process can take
    /// it at once instead of waiting for it to expire.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", args![name, holder])
                .map(|_| ())
        })
    }

    /// Who holds lease `name` at `now`, if anyone.
    pub fn lease_holder(
        &self,
        name: &str,
        now_unix_nanos: u64,
    ) -> Result<Option<String>, StoreError> {
        self.metadata.read(|db| {
            db.query_value(
                "SELECT holder FROM leases WHERE name = ?1 AND expires_unix_nanos > ?2",
                args![name, now_unix_nanos],
            )
        })
    }
}
