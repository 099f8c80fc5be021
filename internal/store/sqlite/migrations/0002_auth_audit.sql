CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1,
    password_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Revoked tokens by jti, kept until the token would expire anyway.
CREATE TABLE token_blacklist (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id                TEXT PRIMARY KEY,
    event_type        TEXT NOT NULL,
    severity          TEXT NOT NULL,
    source_type       TEXT NOT NULL,
    source_id         TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL,
    message           TEXT NOT NULL DEFAULT '',
    details           TEXT NOT NULL DEFAULT '{}',
    error_code        TEXT NOT NULL DEFAULT '',
    error_description TEXT NOT NULL DEFAULT '',
    ip_address        TEXT NOT NULL DEFAULT '',
    user_agent        TEXT NOT NULL DEFAULT '',
    correlation_id    TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log(created_at);
CREATE INDEX audit_log_by_type ON audit_log(event_type, created_at);
CREATE INDEX audit_log_by_source ON audit_log(source_id, created_at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
