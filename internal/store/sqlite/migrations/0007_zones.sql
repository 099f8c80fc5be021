-- Zones (docs/domain.md §7.1); zone_id is stored lower-cased.
CREATE TABLE zones (
    zone_id     TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Subzones of one device; gpios is a JSON array of pin numbers.
CREATE TABLE subzones (
    esp_id         TEXT NOT NULL,
    subzone_id     TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    parent_zone_id TEXT NOT NULL DEFAULT '',
    gpios          TEXT NOT NULL,
    safe_mode      INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL,
    error_code     INTEGER,
    error_message  TEXT NOT NULL DEFAULT '',
    last_ack_at    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (esp_id, subzone_id)
);

-- A device's zone history: one row per assignment or removal.
CREATE TABLE zone_changes (
    id             INTEGER PRIMARY KEY,
    esp_id         TEXT NOT NULL,
    from_zone_id   TEXT NOT NULL,
    to_zone_id     TEXT NOT NULL,
    strategy       TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    at             INTEGER NOT NULL
);
CREATE INDEX zone_changes_by_device ON zone_changes(esp_id, at);
