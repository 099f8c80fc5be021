-- A lease's note is what its holder tells the other replicas about itself:
-- the hub's replicas put the URL of their HTTP API there, so that a
-- standby forwards requests to the primary (docs/decisions/0029-replicas.md).
ALTER TABLE leases ADD COLUMN note text NOT NULL DEFAULT '';
