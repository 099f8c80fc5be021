-- The control database (docs/decisions/0013-control-database.md): actuator
-- configs, runtime states and command history, emergency latches and
-- tokens, in a file of their own so that their commits never queue behind
-- the main database's reading and rollup transactions. The tables are
-- those of main migrations 0005 and 0006, unchanged; main migration 0008
-- moves their rows here.

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
-- Emergency-stop latches (docs/domain.md §5.1): the global latch and one row
-- per device latch, kept inactive after a clear for its attempts and the
-- rule pause. Saves are versioned like device records (docs/decisions/0005).
CREATE TABLE emergency_latches (
	scope                   TEXT PRIMARY KEY,
	esp_id                  TEXT NOT NULL DEFAULT '',
	active                  INTEGER NOT NULL,
	incident_correlation_id TEXT NOT NULL,
	reason                  TEXT NOT NULL,
	activated_by            TEXT NOT NULL,
	activated_at            INTEGER NOT NULL,
	stop_published_at       INTEGER,
	cleared_by              TEXT NOT NULL DEFAULT '',
	cleared_at              INTEGER,
	clear_attempts          TEXT NOT NULL DEFAULT '[]',
	rules_paused            INTEGER NOT NULL DEFAULT 0,
	updated_at              INTEGER NOT NULL,
	version                 INTEGER NOT NULL DEFAULT 0
);

-- Emergency auth tokens provisioned on newer firmware (docs/protocol.md S4):
-- one per device and the hub's broadcast token.
CREATE TABLE emergency_tokens (
	scope        TEXT PRIMARY KEY,
	esp_id       TEXT NOT NULL DEFAULT '',
	token        TEXT NOT NULL,
	sent_at      INTEGER,
	confirmed_at INTEGER,
	updated_at   INTEGER NOT NULL
);
