CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,
    kaiser_id        TEXT NOT NULL DEFAULT '',
    zone_id          TEXT NOT NULL DEFAULT '',
    zone_name        TEXT NOT NULL DEFAULT '',
    master_zone_id   TEXT NOT NULL DEFAULT '',
    hardware_type    TEXT NOT NULL DEFAULT '',
    ip_address       TEXT NOT NULL DEFAULT '',
    firmware_version TEXT NOT NULL DEFAULT '',
    metadata         TEXT NOT NULL DEFAULT '{}',
    last_seen        INTEGER,
    discovered_at    INTEGER,
    approved_at      INTEGER,
    approved_by      TEXT NOT NULL DEFAULT '',
    rejection_reason TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE device_transitions (
    id         INTEGER PRIMARY KEY,
    device_id  TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    cause      TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX device_transitions_by_device ON device_transitions(device_id, at);

-- One row per live heartbeat: the device's health history.
CREATE TABLE device_heartbeats (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    device_time INTEGER NOT NULL,
    time_source TEXT NOT NULL,
    uptime      INTEGER NOT NULL,
    heap_free   INTEGER NOT NULL,
    rssi        INTEGER NOT NULL,
    seq         INTEGER
);
CREATE INDEX device_heartbeats_by_device ON device_heartbeats(device_id, received_at);
