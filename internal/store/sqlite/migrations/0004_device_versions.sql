-- Device saves are versioned (docs/decisions/0005): a save writes only when
-- its version is newer than the stored one. Rows from before start at 0, so
-- the first versioned save replaces them.
ALTER TABLE devices ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- The version of the device record a transition was saved with: a device's
-- transitions read in the order they happened, not in the order they were written.
ALTER TABLE device_transitions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
