-- Sequence progress (docs/domain.md §6.5): one row per run, keyed by its
-- sequence_id (unique among running sequences; a finished one's id may be
-- taken again). Rows of running sequences are resumed or ended at start;
-- finished ones are swept an hour after they ended.
CREATE TABLE sequences (
    id          TEXT PRIMARY KEY,
    rule_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    doc         TEXT NOT NULL
);
CREATE INDEX sequences_by_finish ON sequences(finished_at);
