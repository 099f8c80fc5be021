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
