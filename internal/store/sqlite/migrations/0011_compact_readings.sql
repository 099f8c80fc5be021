-- Readings in fewer bytes (docs/decisions/0021-footprint.md). The text
-- columns that repeat with every reading of a series (unit, quality, mode,
-- time source, source, zone, subzone) become one small integer into
-- reading_meta, and received_at is kept as its distance from ts (a few
-- bytes instead of six). The values are NUMERIC: SQLite stores a REAL of a
-- WITHOUT ROWID table in 8 bytes even when it is a whole number, a NUMERIC
-- one as the integer it is (an ADC count: 2 bytes), and every number reads
-- back as the same number. Every value a query served stays; the copy is in
-- key order, so the new table's pages are full.
CREATE TABLE reading_meta (
    id          INTEGER PRIMARY KEY,
    unit        TEXT NOT NULL,
    quality     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    time_source TEXT NOT NULL,
    source      TEXT NOT NULL,
    zone_id     TEXT NOT NULL,
    subzone_id  TEXT NOT NULL,
    UNIQUE (unit, quality, mode, time_source, source, zone_id, subzone_id)
);

INSERT INTO reading_meta (unit, quality, mode, time_source, source, zone_id, subzone_id)
SELECT DISTINCT unit, quality, mode, time_source, source, zone_id, subzone_id FROM readings;

CREATE TABLE readings_compact (
    series_id    INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    raw          NUMERIC NOT NULL,
    processed    NUMERIC,
    device_value NUMERIC,
    meta         INTEGER NOT NULL,
    received     INTEGER NOT NULL, -- received_at - ts, ms
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

INSERT INTO readings_compact (series_id, ts, raw, processed, device_value, meta, received)
SELECT r.series_id, r.ts, r.raw, r.processed, r.device_value, m.id, r.received_at - r.ts
FROM readings r
JOIN reading_meta m
  ON m.unit = r.unit AND m.quality = r.quality AND m.mode = r.mode AND m.time_source = r.time_source
 AND m.source = r.source AND m.zone_id = r.zone_id AND m.subzone_id = r.subzone_id
ORDER BY r.series_id, r.ts;

DROP TABLE readings;
ALTER TABLE readings_compact RENAME TO readings;
