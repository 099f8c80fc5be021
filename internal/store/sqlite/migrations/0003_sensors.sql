CREATE TABLE sensor_configs (
    id                TEXT PRIMARY KEY,
    esp_id            TEXT NOT NULL,
    gpio              INTEGER NOT NULL,
    sensor_type       TEXT NOT NULL,
    address           TEXT NOT NULL DEFAULT '',
    doc               TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (esp_id, gpio, sensor_type, address)
);

-- A series is one sensor identity (device, gpio, normalised type, bus address).
CREATE TABLE sensor_series (
    id          INTEGER PRIMARY KEY,
    esp_id      TEXT NOT NULL,
    gpio        INTEGER NOT NULL,
    sensor_type TEXT NOT NULL,
    address     TEXT NOT NULL DEFAULT '',
    UNIQUE (esp_id, gpio, sensor_type, address)
);

-- Clustered by (series, time): appends touch one page per series.
CREATE TABLE readings (
    series_id    INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    raw          REAL NOT NULL,
    processed    REAL,
    unit         TEXT NOT NULL,
    quality      TEXT NOT NULL,
    mode         TEXT NOT NULL,
    device_value REAL,
    time_source  TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    source       TEXT NOT NULL,
    zone_id      TEXT NOT NULL,
    subzone_id   TEXT NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

-- Rollups of usable readings (quality not error): counts, sums, extremes
-- of processed values and of raw values, and the last processed value.
CREATE TABLE rollup_1m (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    n INTEGER NOT NULL, sum_raw REAL NOT NULL, min_raw REAL, max_raw REAL,
    n_p INTEGER NOT NULL, sum_p REAL NOT NULL, min_p REAL, max_p REAL, last_p REAL, last_ts INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE rollup_1h (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    n INTEGER NOT NULL, sum_raw REAL NOT NULL, min_raw REAL, max_raw REAL,
    n_p INTEGER NOT NULL, sum_p REAL NOT NULL, min_p REAL, max_p REAL, last_p REAL, last_ts INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE rollup_1d (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    n INTEGER NOT NULL, sum_raw REAL NOT NULL, min_raw REAL, max_raw REAL,
    n_p INTEGER NOT NULL, sum_p REAL NOT NULL, min_p REAL, max_p REAL, last_p REAL, last_ts INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;

-- The last config push per device (CONTRACT P3).
CREATE TABLE config_pushes (
    esp_id         TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    status         TEXT NOT NULL,
    doc            TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- One alert per lifecycle; notifications are per-user copies sharing it.
CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,
    alert_key        TEXT NOT NULL,
    severity         TEXT NOT NULL,
    category         TEXT NOT NULL,
    source           TEXT NOT NULL,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    status           TEXT NOT NULL,
    suppressed       INTEGER NOT NULL DEFAULT 0,
    occurrence_count INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    acknowledged_at  INTEGER,
    acknowledged_by  TEXT NOT NULL DEFAULT '',
    resolved_at      INTEGER,
    resolved_by      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alerts_by_key ON alerts(alert_key, status);
CREATE INDEX alerts_by_time ON alerts(created_at);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    alert_id   TEXT NOT NULL,
    channel    TEXT NOT NULL DEFAULT 'websocket',
    is_read    INTEGER NOT NULL DEFAULT 0,
    read_at    INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX notifications_by_user ON notifications(user_id, created_at);
CREATE INDEX notifications_by_alert ON notifications(alert_id);
