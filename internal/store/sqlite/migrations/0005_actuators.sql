-- Actuator configurations (docs/api.md §8.1): one per device pin.
CREATE TABLE actuator_configs (
    id            TEXT PRIMARY KEY,
    esp_id        TEXT NOT NULL,
    gpio          INTEGER NOT NULL,
    actuator_type TEXT NOT NULL,
    doc           TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (esp_id, gpio)
);

-- The runtime state of each actuator (docs/domain.md §4.6, §4.8): what the
-- device confirmed, its latch, the auto-off deadline and the on-time. The
-- deadline is committed here before the ON that needs it is published.
CREATE TABLE actuator_states (
    esp_id     TEXT NOT NULL,
    gpio       INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (esp_id, gpio)
);

-- States and history rows are versioned like device records (docs/decisions/0005).
-- Commands with their lifecycle and device-originated events (docs/domain.md §4.9).
CREATE TABLE actuator_history (
    id               TEXT PRIMARY KEY,
    esp_id           TEXT NOT NULL,
    gpio             INTEGER NOT NULL,
    actuator_type    TEXT NOT NULL,
    command_type     TEXT NOT NULL,
    command          TEXT NOT NULL,
    value            REAL NOT NULL,
    duration         INTEGER NOT NULL,
    issued_by        TEXT NOT NULL,
    correlation_id   TEXT NOT NULL,
    status           TEXT NOT NULL,
    success          INTEGER,
    error_message    TEXT NOT NULL,
    response_message TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    issued_at        INTEGER NOT NULL,
    sent_at          INTEGER,
    completed_at     INTEGER,
    version          INTEGER NOT NULL
);
CREATE INDEX actuator_history_by_actuator ON actuator_history(esp_id, gpio, issued_at);
CREATE INDEX actuator_history_by_correlation ON actuator_history(correlation_id);
CREATE INDEX actuator_history_open ON actuator_history(status) WHERE status IN ('queued', 'sent');
CREATE INDEX actuator_history_by_time ON actuator_history(issued_at);
