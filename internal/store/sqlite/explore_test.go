package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// exploreFixture is a store with rows in both databases: two users (with
// password hashes), audit entries at known times, an emergency token and a
// secret-looking setting.
func exploreFixture(t *testing.T) (*Store, *Explorer, time.Time) {
	t.Helper()
	ctx := context.Background()
	s := open(t, t.TempDir())
	t.Cleanup(func() { s.Close(ctx) })
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"alice", "bob"} {
		if _, err := s.CreateUser(ctx, store.User{
			Username:     name,
			Email:        name + "@example.org",
			Role:         "viewer",
			IsActive:     name == "alice",
			PasswordHash: "$2a$12$hash-of-" + name,
			TokenVersion: 3,
			CreatedAt:    now,
			UpdatedAt:    now,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i, age := range []time.Duration{time.Hour, 2 * time.Hour, 30 * time.Hour} {
		if err := s.AppendAudit(ctx, store.AuditEntry{
			ID:         fmt.Sprintf("00000000-0000-0000-0000-00000000000%d", i+1),
			EventType:  "login_success",
			Severity:   []string{"info", "warning", "info"}[i],
			SourceType: "user",
			SourceID:   fmt.Sprintf("user_%d%%", i), // a LIKE wildcard in the data
			Status:     "success",
			Details:    map[string]any{"remember_me": true, "api_key": "k-" + fmt.Sprint(i)},
			CreatedAt:  now.Add(-age),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveEmergencyToken(ctx, store.EmergencyToken{
		Scope:     "broadcast",
		Token:     "the-emergency-token",
		UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"mqtt_password": "p4ss", "audit_retention": `{"enabled":true}`} {
		if err := s.PutSetting(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e := s.Explorer()
	e.now = func() time.Time { return now }
	return s, e, now
}

func columnsOf(t ExplorerTable) map[string]ExplorerColumn {
	out := map[string]ExplorerColumn{}
	for _, c := range t.Columns {
		out[c.Name] = c
	}
	return out
}

func TestExplorerListsEveryTableOfBothDatabases(t *testing.T) {
	_, e, _ := exploreFixture(t)
	tables, err := e.Tables(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]ExplorerTable{}
	var names []string
	for _, tb := range tables {
		byName[tb.Name] = tb
		names = append(names, tb.Name)
	}
	for _, want := range []string{"users", "audit_log", "readings", "settings", "schema_migrations",
		"control.emergency_tokens", "control.actuator_history", "control.schema_migrations"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("table %s missing from %v", want, names)
		}
	}
	if _, ok := byName["actuator_configs"]; ok {
		t.Error("a control table listed under the main database")
	}
	if byName["users"].RowCount != 2 || byName["audit_log"].RowCount != 3 || byName["control.emergency_tokens"].RowCount != 1 ||
		byName["control.emergency_tokens"].Database != "control" {
		t.Fatalf("row counts: users %d audit %d tokens %d", byName["users"].RowCount, byName["audit_log"].RowCount,
			byName["control.emergency_tokens"].RowCount)
	}

	users := columnsOf(byName["users"])
	want := map[string]ExplorerColumn{
		"id":            {Name: "id", Kind: KindInteger, PrimaryKey: true},
		"username":      {Name: "username", Kind: KindString},
		"is_active":     {Name: "is_active", Kind: KindBoolean},
		"password_hash": {Name: "password_hash", Kind: KindString, Masked: true},
		"token_version": {Name: "token_version", Kind: KindInteger},
		"created_at":    {Name: "created_at", Kind: KindDatetime},
	}
	for name, c := range want {
		if users[name] != c {
			t.Errorf("users.%s = %+v, want %+v", name, users[name], c)
		}
	}
	readings := byName["readings"]
	if strings.Join(readings.PrimaryKey, ",") != "series_id,ts" || readings.TimeColumn != "ts" ||
		columnsOf(readings)["processed"] != (ExplorerColumn{Name: "processed", Kind: KindFloat, Nullable: true}) {
		t.Fatalf("readings: %+v", readings)
	}
	if c := columnsOf(byName["audit_log"]); c["details"].Kind != KindJSON || c["id"].Kind != KindUUID {
		t.Fatalf("audit_log columns %+v", c)
	}
	if !columnsOf(byName["control.emergency_tokens"])["token"].Masked {
		t.Fatal("emergency tokens are not masked")
	}

	one, err := e.Table(context.Background(), "control.emergency_tokens")
	if err != nil || one.RowCount != 1 || one.Database != "control" {
		t.Fatalf("one table: %+v %v", one, err)
	}
	for _, name := range []string{"nope", "control.users", "sqlite_master", `users" --`} {
		if _, err := e.Table(context.Background(), name); !errors.Is(err, ErrTableNotFound) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// value is the named column's value of a row.
func value(p RowPage, row int, column string) any {
	for i, c := range p.Table.Columns {
		if c.Name == column {
			return p.Rows[row][i]
		}
	}
	return "no such column"
}

func TestExplorerRowsMaskSecrets(t *testing.T) {
	_, e, now := exploreFixture(t)
	ctx := context.Background()
	p, err := e.Rows(ctx, "users", RowQuery{Limit: 10, Desc: true})
	if err != nil || len(p.Rows) != 2 {
		t.Fatalf("%v %+v", err, p)
	}
	// Default order: the primary key, descending.
	if value(p, 0, "username") != "bob" || value(p, 0, "password_hash") != Masked || value(p, 0, "is_active") != false ||
		value(p, 1, "is_active") != true || value(p, 0, "created_at") != now || !p.Since.IsZero() {
		t.Fatalf("users %+v", p.Rows)
	}

	p, _ = e.Rows(ctx, "control.emergency_tokens", RowQuery{Limit: 10})
	if value(p, 0, "token") != Masked || value(p, 0, "scope") != "broadcast" {
		t.Fatalf("emergency token %+v", p.Rows)
	}
	p, _ = e.Rows(ctx, "settings", RowQuery{Limit: 10, SortBy: "key", Desc: true})
	if value(p, 0, "key") != "mqtt_password" || value(p, 0, "value") != Masked || value(p, 1, "value") != `{"enabled":true}` {
		t.Fatalf("settings %+v", p.Rows)
	}
	p, _ = e.Rows(ctx, "audit_log", RowQuery{Limit: 10})
	details := value(p, 0, "details").(map[string]any)
	if details["api_key"] != Masked || details["remember_me"] != true {
		t.Fatalf("audit details %v", details)
	}

	for _, q := range []RowQuery{
		{Conditions: []Condition{{Column: "password_hash", Op: "eq", Value: "x"}}},
		{Conditions: []Condition{{Column: "password_hash", Op: "contains", Value: "$2a"}}},
		{SortBy: "password_hash"},
	} {
		q.Limit = 10
		if _, err := e.Rows(ctx, "users", q); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("%+v on a masked column: %v", q, err)
		}
	}
}

func TestExplorerTimeSeriesDefaultToTheLastDay(t *testing.T) {
	_, e, now := exploreFixture(t)
	ctx := context.Background()
	p, err := e.Rows(ctx, "audit_log", RowQuery{Limit: 10, Desc: true})
	if err != nil || p.Total != 2 || !p.Since.Equal(now.Add(-DefaultWindow)) {
		t.Fatalf("default window: %v total %d since %v", err, p.Total, p.Since)
	}
	if value(p, 0, "created_at") != now.Add(-time.Hour) || value(p, 1, "created_at") != now.Add(-2*time.Hour) {
		t.Fatalf("newest first: %+v", p.Rows)
	}
	p, _ = e.Rows(ctx, "audit_log", RowQuery{Limit: 10, Conditions: []Condition{
		{Column: "created_at", Op: "lt", Value: now.Add(-3 * time.Hour).Format(time.RFC3339)},
	}})
	if p.Total != 1 || !p.Since.IsZero() {
		t.Fatalf("a time filter replaces the window: total %d since %v", p.Total, p.Since)
	}
}

func TestExplorerFilters(t *testing.T) {
	_, e, now := exploreFixture(t)
	ctx := context.Background()
	week := json.Number(fmt.Sprint(now.Add(-7 * 24 * time.Hour).Unix()))
	tests := []struct {
		name  string
		conds []Condition
		want  int64
	}{
		{"eq", []Condition{{"severity", "eq", "warning"}}, 1},
		// Without a time filter the last day only: the 30 h old info entry is not counted.
		{"in", []Condition{{"severity", "in", []any{"info", "error"}}}, 1},
		{"in nothing", []Condition{{"severity", "in", []any{}}}, 0},
		{"contains is literal", []Condition{{"source_id", "contains", "1%"}}, 1},
		{"contains an underscore", []Condition{{"source_id", "contains", "r_"}}, 2},
		{"gte unix seconds", []Condition{{"created_at", "gte", week}}, 3},
		{"lte ISO", []Condition{{"created_at", "lte", now.Add(-90 * time.Minute).Format(time.RFC3339)}}, 2},
		{"two conditions", []Condition{{"severity", "eq", "info"}, {"created_at", "gt", week}}, 2},
		{"null", []Condition{{"error_code", "eq", nil}}, 0},
		{"injection is a value", []Condition{{"severity", "eq", "info' OR '1'='1"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.Rows(ctx, "audit_log", RowQuery{Conditions: tt.conds, Limit: 10})
			if err != nil || p.Total != tt.want || int64(len(p.Rows)) != tt.want {
				t.Fatalf("%v: total %d rows %d, want %d", err, p.Total, len(p.Rows), tt.want)
			}
		})
	}

	p, err := e.Rows(ctx, "users", RowQuery{Conditions: []Condition{{"is_active", "eq", true}}, Limit: 10})
	if err != nil || p.Total != 1 || value(p, 0, "username") != "alice" {
		t.Fatalf("boolean filter: %v %+v", err, p.Rows)
	}
	p, _ = e.Rows(ctx, "users", RowQuery{SortBy: "username", Limit: 1, Offset: 1})
	if p.Total != 2 || len(p.Rows) != 1 || value(p, 0, "username") != "bob" {
		t.Fatalf("sorted ascending, second page: %+v", p.Rows)
	}

	for _, c := range []Condition{
		{"nope", "eq", 1},
		{`severity" OR 1=1 --`, "eq", 1},
		{"severity", "like", "x"},
		{"created_at", "gt", "yesterday"},
		{"severity", "in", "info"},
		{"severity", "eq", true},
		{"created_at", "contains", "2026"},
	} {
		if _, err := e.Rows(ctx, "audit_log", RowQuery{Conditions: []Condition{c}, Limit: 10}); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if _, err := e.Rows(ctx, "audit_log", RowQuery{SortBy: "nope", Limit: 10}); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("sort by an unknown column: %v", err)
	}
}

func TestExplorerRecord(t *testing.T) {
	s, e, now := exploreFixture(t)
	ctx := context.Background()
	tb, row, err := e.Record(ctx, "users", "1")
	if err != nil || row[1] != "alice" || tb.Name != "users" {
		t.Fatalf("user 1: %v %v", err, row)
	}
	if _, row, err := e.Record(ctx, "control.emergency_tokens", "broadcast"); err != nil || row[2] != Masked {
		t.Fatalf("token: %v %v", err, row)
	}
	// A composite key: its values joined by "," in key order, a time as RFC 3339.
	ts := now.Add(-time.Hour)
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		if _, err := tx.Exec(`INSERT INTO reading_meta (id, unit, quality, mode, time_source, source, zone_id,
			subzone_id) VALUES (1, 'pH', 'good', 'raw', 'device', 'device', '', '')`); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO readings (series_id, ts, raw, meta, received) VALUES (7, ?, 2150, 1, 0)`,
			ts.UnixMilli())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tb, row, err = e.Record(ctx, "readings", "7,"+ts.Format("2006-01-02T15:04:05.000Z07:00"))
	if err != nil || row[0] != int64(7) || row[1] != ts || tb.PrimaryKey[1] != "ts" {
		t.Fatalf("reading: %v %v", err, row)
	}
	if _, _, err := e.Record(ctx, "readings", "7"); !errors.Is(err, ErrRecordNotFound) {
		t.Errorf("half a composite key: %v", err)
	}
	for table, id := range map[string]string{"users": "abc", "audit_log": "missing", "settings": "nope"} {
		if _, _, err := e.Record(ctx, table, id); !errors.Is(err, ErrRecordNotFound) {
			t.Errorf("%s/%s: %v", table, id, err)
		}
	}
	if _, _, err := e.Record(ctx, "nope", "1"); !errors.Is(err, ErrTableNotFound) {
		t.Errorf("unknown table: %v", err)
	}
}

// Nothing the explorer runs can write: its connections are query_only.
func TestExplorerConnectionsCannotWrite(t *testing.T) {
	s, e, _ := exploreFixture(t)
	for _, d := range e.dbs {
		if _, err := d.db.ExecContext(context.Background(), `DELETE FROM schema_migrations`); err == nil {
			t.Fatalf("%s: a write through the explorer's pool succeeded", d.database)
		}
	}
	if v, err := s.SchemaVersion(context.Background()); err != nil || v == 0 {
		t.Fatalf("schema version %d %v", v, err)
	}
}

// Every table of the schema can be read with the defaults, and every column
// has one of the kinds of docs/api.md §16.2.
func TestExplorerReadsEveryTable(t *testing.T) {
	_, e, _ := exploreFixture(t)
	ctx := context.Background()
	tables, err := e.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{KindString, KindInteger, KindFloat, KindBoolean, KindDatetime, KindJSON, KindUUID}
	for _, tb := range tables {
		for _, c := range tb.Columns {
			if !slices.Contains(kinds, c.Kind) {
				t.Errorf("%s.%s: kind %q", tb.Name, c.Name, c.Kind)
			}
		}
		for _, desc := range []bool{true, false} {
			if _, err := e.Rows(ctx, tb.Name, RowQuery{Limit: 5, Desc: desc}); err != nil {
				t.Errorf("%s: %v", tb.Name, err)
			}
		}
	}
	if len(tables) < 20 {
		t.Fatalf("only %d tables", len(tables))
	}
}
