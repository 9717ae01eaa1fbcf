-- API tokens. Only the SHA-256 of the secret is kept; `prefix` is public and finds the row.
CREATE TABLE api_tokens (
    prefix TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    scopes TEXT NOT NULL,                 -- space-separated: ingest deploy webhook read admin
    services TEXT,                        -- space-separated restriction; NULL: every service
    environments TEXT,                    -- space-separated restriction; NULL: every environment
    created_unix_nanos INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_unix_nanos INTEGER NOT NULL,  -- rotation shortens it to the end of the grace window
    last_used_unix_nanos INTEGER,
    revoked_unix_nanos INTEGER,
    superseded_by TEXT,                   -- rotation: the replacement's prefix
    rotated_from TEXT                     -- rotation: the predecessor's prefix
);

-- Browser sessions after an OIDC sign-in. Only the SHA-256 of the cookie's value is kept.
CREATE TABLE sessions (
    id_sha256 BLOB PRIMARY KEY,
    principal TEXT NOT NULL,              -- JSON written by the server: id, roles, teams, name
    csrf_token TEXT NOT NULL,
    id_token TEXT NOT NULL,               -- for the provider's logout (`id_token_hint`)
    created_unix_nanos INTEGER NOT NULL,
    expires_unix_nanos INTEGER NOT NULL
);

-- Sign-ins under way: what the callback must find (OIDC `state`, `nonce`, PKCE verifier).
CREATE TABLE sign_ins (
    state_sha256 BLOB PRIMARY KEY,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    expires_unix_nanos INTEGER NOT NULL
);

-- The audit log: append-only; each record's link is an HMAC of the previous link and its
-- fields under the key in `audit.key` (auth::audit).
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    time_unix_nanos INTEGER NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    request_id TEXT NOT NULL,
    prev_link BLOB NOT NULL,
    link BLOB NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (time_unix_nanos);

-- Where the kept chain starts (retention removes a prefix) and ends (the last record).
CREATE TABLE audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    first_seq INTEGER NOT NULL,
    first_prev_link BLOB NOT NULL,
    head_seq INTEGER,
    head_link BLOB
);
INSERT INTO audit_anchor VALUES (1, 1, zeroblob(32), NULL, NULL);
