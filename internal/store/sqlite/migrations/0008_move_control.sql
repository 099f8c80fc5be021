-- The control tables now live in the control database
-- (docs/decisions/0013-control-database.md, control migration 0001); their
-- rows were copied there just before this migration (moveControlTables).
DROP TABLE actuator_configs;
DROP TABLE actuator_states;
DROP TABLE actuator_history;
DROP TABLE emergency_latches;
DROP TABLE emergency_tokens;
