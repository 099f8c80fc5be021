-- Leases of singleton work among hub replicas (docs/decisions/0027-leases.md,
-- internal/lease). One row per lease. The epoch goes up on every change of
-- holder (and when a holder takes its lease again after losing it), so a
-- write fenced with (name, holder, epoch) commits only for the current
-- term. Times are timestamptz, not unix ms like the domain's tables: they
-- are compared with the database's own clock (clock_timestamp()) only, so
-- replicas' clocks never meet, and no SQLite table mirrors them.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL CHECK (epoch > 0),
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Makes epoch a key column: an UPDATE that changes it (a takeover) needs
-- the row's FOR UPDATE lock, which waits for a fenced transaction's
-- FOR KEY SHARE lock, while a renewal (expires_at only) does not.
CREATE UNIQUE INDEX leases_name_epoch ON leases (name, epoch);
