-- Automation rules (docs/domain.md §6). The rule document is JSON owned by
-- internal/rule; name, enabled and priority are columns for uniqueness
-- and ordering. No foreign keys: history rows are written without waiting
-- for their commit, and a rule's rows go with it in DeleteRule.
CREATE TABLE rules (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    enabled        INTEGER NOT NULL,
    priority       INTEGER NOT NULL,
    doc            TEXT NOT NULL,
    last_triggered INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Execution history (docs/domain.md §6.11); finished_at is NULL until every
-- action result is terminal.
CREATE TABLE rule_executions (
    id                TEXT PRIMARY KEY,
    rule_id           TEXT NOT NULL,
    rule_name         TEXT NOT NULL,
    triggered_at      INTEGER NOT NULL,
    trigger_reason    TEXT NOT NULL,
    trigger           TEXT NOT NULL,
    condition_results TEXT NOT NULL,
    action_results    TEXT NOT NULL,
    actions_executed  INTEGER NOT NULL,
    success           INTEGER NOT NULL,
    terminal_reason   TEXT NOT NULL DEFAULT '',
    error_message     TEXT NOT NULL DEFAULT '',
    finished_at       INTEGER,
    execution_ms      INTEGER
);
CREATE INDEX rule_executions_by_time ON rule_executions(triggered_at);
CREATE INDEX rule_executions_by_rule ON rule_executions(rule_id, triggered_at);

-- Hysteresis leaf states (docs/domain.md §6.3.3), loaded at start.
CREATE TABLE rule_hysteresis (
    rule_id           TEXT NOT NULL,
    path              TEXT NOT NULL,
    is_active         INTEGER NOT NULL,
    last_value        REAL,
    last_activation   INTEGER,
    last_deactivation INTEGER,
    PRIMARY KEY (rule_id, path)
);

-- Pending delay continuations (docs/domain.md §6.4), resumed or ended at start.
CREATE TABLE rule_continuations (
    id           TEXT PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    due_at       INTEGER NOT NULL,
    doc          TEXT NOT NULL
);
