package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store"
)

// openOldLayout creates a main database as it was before the control split
// (migrations 1–7, control tables inside it) with one row in each control
// table, the way a site upgraded from an earlier version has it.
func openOldLayout(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kaiser.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	d := &database{write: db, log: slog.New(slog.DiscardHandler)}
	if err := d.migrate(ctx, dbConfig{file: "kaiser.db", migrations: "migrations/000[1-7]_*.sql"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO actuator_configs VALUES ('a1', 'ESP_A1B2C3', 5, 'pump', '{"gpio":5}', 1, 2)`,
		`INSERT INTO actuator_states VALUES ('ESP_A1B2C3', 5, '{"state":"on"}', 3, 4)`,
		`INSERT INTO actuator_history (id, esp_id, gpio, actuator_type, command_type, command, value, duration,
			issued_by, correlation_id, status, error_message, response_message, metadata, issued_at, version)
			VALUES ('c1', 'ESP_A1B2C3', 5, 'pump', 'ON', 'ON', 1, 20, 'user:ana', 'c1', 'acknowledged', '', '', '{}', 5, 1)`,
		`INSERT INTO emergency_latches (scope, active, incident_correlation_id, reason, activated_by, activated_at, updated_at, version)
			VALUES ('global', 1, 'inc-1', 'flood', 'operator', 6, 6, 1)`,
		`INSERT INTO emergency_tokens (scope, token, updated_at) VALUES ('broadcast', 'tok', 7)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// A site upgraded from the single-database layout keeps its actuators,
// states, command history, latch and tokens; the main database no longer has
// the tables. A start interrupted between the copy and the drop copies again
// without doubling anything.
func TestControlTablesMoveFromOldDatabase(t *testing.T) {
	t.Run("upgrade", func(t *testing.T) {
		dir := t.TempDir()
		openOldLayout(t, dir)
		checkMoved(t, dir)
	})
	t.Run("interrupted", func(t *testing.T) {
		dir := t.TempDir()
		openOldLayout(t, dir)
		copyOnce(t, dir)
		checkMoved(t, dir)
	})
}

// copyOnce is a start that stopped after the copy, before migration 8.
func copyOnce(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	control, err := openDatabase(ctx, dir, Options{Logger: slog.New(slog.DiscardHandler)}, dbConfig{
		file:           controlFile,
		migrations:     "migrations/control/*.sql",
		writerCacheKiB: 1024,
		readerCacheKiB: 1024,
		readConns:      1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := moveControlTables(ctx, openMain(t, dir), control.path); err != nil {
		t.Fatal(err)
	}
	if err := control.close(ctx); err != nil {
		t.Fatal(err)
	}
}

func checkMoved(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	s := open(t, dir)
	defer s.Close(ctx)

	cfgs, err := s.LoadActuatorConfigs(ctx)
	if err != nil || len(cfgs) != 1 || cfgs[0].ID != "a1" || cfgs[0].GPIO != 5 {
		t.Fatalf("configs %+v %v", cfgs, err)
	}
	states, err := s.LoadActuatorStates(ctx)
	if err != nil || len(states) != 1 || string(states[0].JSON) != `{"state":"on"}` || states[0].Version != 4 {
		t.Fatalf("states %+v %v", states, err)
	}
	cmd, err := s.GetActuatorCommand(ctx, "c1")
	if err != nil || cmd.Status != "acknowledged" || cmd.IssuedBy != "user:ana" {
		t.Fatalf("command %+v %v", cmd, err)
	}
	if rows, n, err := s.ActuatorHistory(ctx, "ESP_A1B2C3", 5, 10); err != nil || n != 1 || len(rows) != 1 {
		t.Fatalf("history rows %d %v", n, err)
	}
	latches, err := s.LoadLatches(ctx)
	if err != nil || len(latches) != 1 || latches[0].Scope != store.LatchGlobal || !latches[0].Active {
		t.Fatalf("latches %+v %v", latches, err)
	}
	tokens, err := s.LoadEmergencyTokens(ctx)
	if err != nil || len(tokens) != 1 || tokens[0].Token != "tok" {
		t.Fatalf("tokens %+v %v", tokens, err)
	}

	var left int
	err = s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN
		('actuator_configs', 'actuator_states', 'actuator_history', 'emergency_latches', 'emergency_tokens')`).Scan(&left)
	if err != nil || left != 0 {
		t.Fatalf("control tables left in the main database: %d %v", left, err)
	}
}

func openMain(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kaiser.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
