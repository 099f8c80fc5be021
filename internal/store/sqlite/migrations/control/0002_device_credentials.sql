-- Device MQTT credentials for the embedded broker (docs/domain.md §1.2,
-- docs/decisions/0018-device-credentials.md): one row per device id, the
-- password only as its bcrypt hash. In the control database because every
-- write gates what the broker lets a device do, and must not wait behind
-- the main database's reading transactions.
CREATE TABLE device_credentials (
    esp_id        TEXT PRIMARY KEY,
    password_hash BLOB NOT NULL,
    version       INTEGER NOT NULL,
    issued_by     TEXT NOT NULL,
    issued_at     INTEGER NOT NULL
);
