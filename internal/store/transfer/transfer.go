// Package transfer moves a site from the SQLite store to the PostgreSQL
// store (kaiser migrate-store, docs/decisions/0026-hub-on-postgres.md):
// every table of both SQLite files is copied into an empty PostgreSQL
// database in one transaction, with COPY, and the row counts of every
// table are compared before it commits. Both schemas hold the same values
// (docs/decisions/0025-postgres-store.md), so the copy is of rows; only
// the readings are unpacked from SQLite's compact form.
package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The SQLite files in a data directory.
const (
	mainFile    = "kaiser.db"
	controlFile = "control.db"
)

// table is one table to copy: its name in both stores, the SQLite file it
// lives in, and the SQLite expressions of the PostgreSQL columns that are
// not a column of the same name.
type table struct {
	name    string
	control bool
	from    string            // the FROM clause; the table itself when empty
	exprs   map[string]string // PostgreSQL column → SQLite expression
}

// tables are every table of the hub's schema, in dependency order: a row
// comes after the rows it names (the schema has no foreign keys, but a
// reader of a half-copied database would see them so).
var tables = []table{
	{name: "devices"},
	{name: "device_transitions"},
	{name: "device_heartbeats"},
	{name: "config_pushes"},
	{name: "users"},
	{name: "token_blacklist"},
	// SQLite orders audit entries by rowid; PostgreSQL by its seq column.
	{name: "audit_log", exprs: map[string]string{"seq": "rowid"}},
	{name: "settings"},
	{name: "sensor_configs"},
	{name: "sensor_series"},
	{name: "readings", from: "readings r JOIN reading_meta m ON m.id = r.meta", exprs: map[string]string{
		"series_id": "r.series_id", "ts": "r.ts", "raw": "r.raw", "processed": "r.processed",
		"device_value": "r.device_value", "received_at": "r.ts + r.received",
		"unit": "m.unit", "quality": "m.quality", "mode": "m.mode", "time_source": "m.time_source",
		"source": "m.source", "zone_id": "m.zone_id", "subzone_id": "m.subzone_id",
	}},
	{name: "rollup_1m"},
	{name: "rollup_1h"},
	{name: "rollup_1d"},
	{name: "alerts"},
	{name: "notifications"},
	{name: "zones"},
	{name: "subzones"},
	{name: "zone_changes"},
	{name: "rules"},
	{name: "rule_executions"},
	{name: "rule_hysteresis"},
	{name: "rule_continuations"},
	{name: "sequences"},
	{name: "actuator_configs", control: true},
	{name: "actuator_states", control: true},
	{name: "actuator_history", control: true},
	{name: "emergency_latches", control: true},
	{name: "emergency_tokens", control: true},
	{name: "device_credentials", control: true},
}

// notCopied are the tables of either store that hold no site data: each
// store's migration bookkeeping, SQLite's reading_meta, which the
// readings' copy unpacks, and PostgreSQL's leases among replicas
// (docs/decisions/0027-leases.md), which a single SQLite hub never had.
var notCopied = []string{"schema_migrations", "reading_meta", "leases"}

// Options tunes a transfer.
type Options struct {
	// Password, when set, is the PostgreSQL password (it replaces the URL's).
	Password string
	// Replace empties a target that holds hub data instead of refusing it.
	Replace bool
	// Progress, when set, hears each table as it is copied.
	Progress func(table string, rows int64)
	Logger   *slog.Logger
}

// Count is one table's rows in the source and, after the copy, in the target.
type Count struct {
	Table  string
	Source int64
	Target int64
}

// Report is what a transfer copied.
type Report struct {
	Tables   []Count
	Duration time.Duration
}

// Rows is the number of rows copied.
func (r Report) Rows() int64 {
	var n int64
	for _, c := range r.Tables {
		n += c.Target
	}
	return n
}

// ErrHubRunning means a hub (or a crashed one) still has the SQLite files open.
var ErrHubRunning = errors.New("the SQLite store is in use")

// ErrTargetNotEmpty means the PostgreSQL database already holds hub data.
var ErrTargetNotEmpty = errors.New("the PostgreSQL database is not empty")

// SQLiteToPostgres copies the SQLite store of dataDir into the PostgreSQL
// database at dsn. The hub must be stopped: a write-ahead log beside a
// file means a hub has it open (or stopped without closing it), and the
// transfer refuses. The SQLite store is first opened and closed once, so
// that its migrations bring an older data directory to the schema this
// copy reads; the PostgreSQL store is opened likewise to create its schema.
func SQLiteToPostgres(ctx context.Context, dataDir, dsn string, opt Options) (Report, error) {
	start := time.Now()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	for _, f := range []string{mainFile, controlFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			return Report{}, fmt.Errorf("source %s: %w", dataDir, err)
		}
	}
	if err := checkStopped(dataDir); err != nil {
		return Report{}, err
	}
	src, err := sqlite.Open(ctx, dataDir, sqlite.Options{Logger: opt.Logger})
	if err != nil {
		return Report{}, fmt.Errorf("open the SQLite store: %w", err)
	}
	if err := src.Close(ctx); err != nil {
		return Report{}, fmt.Errorf("close the SQLite store: %w", err)
	}
	main, err := openSQLite(ctx, filepath.Join(dataDir, mainFile))
	if err != nil {
		return Report{}, err
	}
	defer main.Close()
	control, err := openSQLite(ctx, filepath.Join(dataDir, controlFile))
	if err != nil {
		return Report{}, err
	}
	defer control.Close()

	dst, err := postgres.Open(ctx, dsn, postgres.Options{Password: opt.Password, Logger: opt.Logger})
	if err != nil {
		return Report{}, fmt.Errorf("open the PostgreSQL store: %w", err)
	}
	defer dst.Close(context.WithoutCancel(ctx))
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return Report{}, fmt.Errorf("postgres dsn: %w", err)
	}
	if opt.Password != "" {
		cfg.Password = opt.Password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Report{}, fmt.Errorf("postgres connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if err := checkTables(ctx, main, control, conn); err != nil {
		return Report{}, err
	}
	if err := readingPartitions(ctx, main, dst); err != nil {
		return Report{}, err
	}

	var rep Report
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := emptyTarget(ctx, tx, opt.Replace); err != nil {
			return err
		}
		for _, t := range tables {
			db := main
			if t.control {
				db = control
			}
			c, err := copyTable(ctx, db, tx, t)
			if err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			if opt.Progress != nil {
				opt.Progress(t.name, c.Target)
			}
			rep.Tables = append(rep.Tables, c)
		}
		if err := restartIdentities(ctx, tx); err != nil {
			return err
		}
		for _, c := range rep.Tables {
			if c.Source != c.Target {
				return fmt.Errorf("%s: %d rows in SQLite, %d copied; nothing committed", c.Table, c.Source, c.Target)
			}
		}
		return nil
	})
	rep.Duration = time.Since(start)
	return rep, err
}

// checkStopped refuses files with a write-ahead log: the SQLite store
// removes it when it closes cleanly, so it is there while a hub runs (or
// after one crashed; starting and stopping the hub once replays it).
func checkStopped(dataDir string) error {
	for _, f := range []string{mainFile, controlFile} {
		wal := filepath.Join(dataDir, f+"-wal")
		if st, err := os.Stat(wal); err == nil && st.Size() > 0 {
			return fmt.Errorf("%w: %s exists: stop the hub first (after a crash, start and stop it once)",
				ErrHubRunning, wal)
		}
	}
	return nil
}

// source is one SQLite file, read in one read-only transaction: every
// table of the file is copied from the same snapshot.
type source struct {
	db *sql.DB
	tx *sql.Tx
}

func openSQLite(ctx context.Context, path string) (*source, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=query_only(on)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &source{db: db, tx: tx}, nil
}

func (s *source) Close() {
	_ = s.tx.Rollback()
	_ = s.db.Close()
}

// checkTables fails when either store has a table this copy does not
// know: a schema newer than the transfer would otherwise lose it.
func checkTables(ctx context.Context, main, control *source, pg *pgx.Conn) error {
	known := map[string]bool{}
	for _, t := range tables {
		known[t.name] = true
	}
	for _, n := range notCopied {
		known[n] = true
	}
	var unknown []string
	for _, src := range []*source{main, control} {
		rows, err := src.tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
		if err != nil {
			return fmt.Errorf("list the SQLite tables: %w", err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			if !known[n] {
				unknown = append(unknown, "SQLite "+n)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	names, err := pgTables(ctx, pg)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !known[n] {
			unknown = append(unknown, "PostgreSQL "+n)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("tables this kaiser does not know how to copy: %s", strings.Join(unknown, ", "))
	}
	return nil
}

// pgTables are the tables of the current schema, partitions left out.
func pgTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition`)
	if err != nil {
		return nil, fmt.Errorf("list the PostgreSQL tables: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// readingPartitions creates the daily partitions the readings go into.
func readingPartitions(ctx context.Context, main *source, dst *postgres.Store) error {
	var lo, hi sql.NullInt64
	if err := main.tx.QueryRowContext(ctx, `SELECT MIN(ts), MAX(ts) FROM readings`).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("readings' time range: %w", err)
	}
	if !lo.Valid {
		return nil
	}
	return dst.CreateReadingPartitions(ctx, lo.Int64, hi.Int64)
}

// emptyTarget refuses a target holding hub data, or empties it when told.
func emptyTarget(ctx context.Context, tx pgx.Tx, replace bool) error {
	var full []string
	for _, t := range tables {
		var has bool
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s)`,
			pgx.Identifier{t.name}.Sanitize())).Scan(&has); err != nil {
			return fmt.Errorf("check %s: %w", t.name, err)
		}
		if has {
			full = append(full, t.name)
		}
	}
	if len(full) == 0 {
		return nil
	}
	if !replace {
		return fmt.Errorf("%w: rows in %s (--replace empties it first)", ErrTargetNotEmpty, strings.Join(full, ", "))
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.name}.Sanitize()
	}
	if _, err := tx.Exec(ctx, `TRUNCATE `+strings.Join(names, ", ")+` RESTART IDENTITY`); err != nil {
		return fmt.Errorf("empty the target: %w", err)
	}
	return nil
}

// column is one PostgreSQL column and its type.
type column struct{ name, typ string }

func pgColumns(ctx context.Context, tx pgx.Tx, name string) ([]column, error) {
	rows, err := tx.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.typ)
		return c, err
	})
}

// copyTable streams one table from SQLite into PostgreSQL with COPY and
// counts both sides.
func copyTable(ctx context.Context, src *source, tx pgx.Tx, t table) (Count, error) {
	c := Count{Table: t.name}
	from := t.from
	if from == "" {
		from = `"` + t.name + `"`
	}
	if err := src.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+from).Scan(&c.Source); err != nil {
		return c, fmt.Errorf("count in SQLite: %w", err)
	}
	cols, err := pgColumns(ctx, tx, t.name)
	if err != nil {
		return c, err
	}
	names := make([]string, len(cols))
	exprs := make([]string, len(cols))
	for i, col := range cols {
		names[i] = col.name
		exprs[i] = `"` + col.name + `"`
		if e, ok := t.exprs[col.name]; ok {
			exprs[i] = e
		}
	}
	rows, err := src.tx.QueryContext(ctx, `SELECT `+strings.Join(exprs, ", ")+` FROM `+from)
	if err != nil {
		return c, fmt.Errorf("read from SQLite: %w", err)
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	next := func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out := make([]any, len(cols))
		for i, v := range vals {
			out[i], err = convert(v, cols[i].typ)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", cols[i].name, err)
			}
		}
		return out, nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, names, &rowSource{next: next}); err != nil {
		return c, err
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM %s`, pgx.Identifier{t.name}.Sanitize())).Scan(&c.Target)
	return c, err
}

// rowSource is a pgx.CopyFromSource over a row function.
type rowSource struct {
	next func() ([]any, error)
	row  []any
	err  error
}

func (s *rowSource) Next() bool {
	s.row, s.err = s.next()
	return s.row != nil && s.err == nil
}

func (s *rowSource) Values() ([]any, error) { return s.row, nil }
func (s *rowSource) Err() error             { return s.err }

// convert turns a SQLite value into the PostgreSQL column's: 0/1 flags
// into booleans, whole numbers of a NUMERIC column into floats.
func convert(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "boolean":
		switch x := v.(type) {
		case int64:
			return x != 0, nil
		case bool:
			return x, nil
		}
	case "double precision", "real":
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		}
	case "bigint", "integer", "smallint":
		if x, ok := v.(int64); ok {
			return x, nil
		}
	case "text":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case "bytea":
		switch x := v.(type) {
		case []byte:
			return slices.Clone(x), nil
		case string:
			return []byte(x), nil
		}
	default:
		return v, nil
	}
	return nil, fmt.Errorf("a %T (%v) for a %s column", v, v, typ)
}

// restartIdentities moves each identity column's sequence past the
// copied ids, so the hub's next row does not take a copied one's.
func restartIdentities(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return err
	}
	type ident struct{ table, column string }
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ident, error) {
		var i ident
		err := r.Scan(&i.table, &i.column)
		return i, err
	})
	if err != nil {
		return err
	}
	for _, i := range ids {
		t, c := pgx.Identifier{i.table}.Sanitize(), pgx.Identifier{i.column}.Sanitize()
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(%s), 0) + 1, false) FROM %s`,
			c, t), i.table, i.column); err != nil {
			return fmt.Errorf("restart %s.%s: %w", i.table, i.column, err)
		}
	}
	return nil
}
