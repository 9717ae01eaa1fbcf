-- Leases: background work that must run in one place at a time (detection, retention, mirror
-- fetches, notification delivery) is done by whoever holds its lease. With one process on
-- SQLite that is always this process; on PostgreSQL, one replica of the fleet.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,                  -- the replica: host name, process id, start time
    expires_unix_nanos INTEGER NOT NULL
);

-- An HMAC of a fixed text under the audit key, written on first open: a process opened with
-- a different key (a replica with its own `audit.key`) is refused instead of forking the chain.
ALTER TABLE audit_anchor ADD COLUMN key_check BLOB;
