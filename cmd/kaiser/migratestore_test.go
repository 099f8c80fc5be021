package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// kaiser migrate-store copies a stopped hub's store and reports each
// table's counts; it refuses a store a hub has open, and a filled target
// unless --replace. (internal/hub's TestMigrateStoreSQLiteToPostgres
// checks the copy itself, table by table, through the store interfaces.)
func TestMigrateStoreCommand(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Config{})
	url := srv.NewDatabaseURL(t)
	dir := t.TempDir()
	ctx := t.Context()
	lite, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	if _, err := lite.CreateFirstUser(ctx, store.User{Username: "admin", Email: "a@example.org", Role: "admin",
		IsActive: true, PasswordHash: "x", TokenVersion: 1, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	migrate := func(extra ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"migrate-store", "--from", "sqlite:" + dir, "--to", url}, extra...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	if code, _, stderr := migrate(); code != 2 || !strings.Contains(stderr, "stop the hub first") {
		t.Fatalf("with the store open: exit %d, %s", code, stderr)
	}
	if err := lite.Close(ctx); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := migrate()
	if code != 0 || !strings.Contains(stdout, "every count matches") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !hasRow(stdout, "users", "1", "1") || !hasRow(stdout, "readings", "0", "0") {
		t.Fatalf("report:\n%s", stdout)
	}
	if code, _, stderr := migrate(); code != 2 || !strings.Contains(stderr, "not empty: rows in users") {
		t.Fatalf("into the filled database: exit %d, %s", code, stderr)
	}
	if code, stdout, stderr := migrate("--replace"); code != 0 || !hasRow(stdout, "users", "1", "1") {
		t.Fatalf("--replace: exit %d\n%s\n%s", code, stdout, stderr)
	}

	pg, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	u, err := pg.FindUserByLogin(ctx, "ADMIN")
	if err != nil || u.Email != "a@example.org" || !u.IsActive || !u.CreatedAt.Equal(now) {
		t.Fatalf("the user in PostgreSQL: %+v %v", u, err)
	}
	// The identity moved past the copied id: the next user is number 2.
	u2, err := pg.CreateUser(ctx, store.User{Username: "op", Email: "o@example.org", Role: "operator",
		IsActive: true, PasswordHash: "x", TokenVersion: 1, CreatedAt: now, UpdatedAt: now})
	if err != nil || u2.ID != u.ID+1 {
		t.Fatalf("a new user after the copy: %+v %v", u2, err)
	}
}

// hasRow reports whether the report has a line of table with these counts.
func hasRow(report, table string, counts ...string) bool {
	for _, l := range strings.Split(report, "\n") {
		if f := strings.Fields(l); len(f) == 1+len(counts) && f[0] == table &&
			strings.Join(f[1:], " ") == strings.Join(counts, " ") {
			return true
		}
	}
	return false
}
