-- An HMAC under the audit key of where the kept chain starts and ends, so the anchor cannot be
-- moved to hide records deleted from either end (set on the next open for existing chains).
ALTER TABLE audit_anchor ADD COLUMN anchor_mac BYTEA;
