package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// backupCmd is `kaiser backup`: a consistent snapshot of a (running) hub's
// databases into one archive file.
func backupCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr("KAISER_DATA_DIR", "./data"), "the hub's data directory")
	to := fs.String("to", "", "archive file to write (a tar of kaiser.db and control.db)")
	database := fs.String("database", os.Getenv("KAISER_DATABASE"), "the hub's --database; PostgreSQL is refused")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if refusePostgres(stderr, "backup", *database) {
		return 2
	}
	if *to == "" {
		fmt.Fprintln(stderr, "kaiser backup: --to FILE is required")
		return 2
	}

	// Written beside the target and renamed, so a failed backup never
	// leaves a truncated archive under the requested name.
	tmp, err := os.CreateTemp(filepath.Dir(*to), ".kaiser-backup-*")
	if err != nil {
		fmt.Fprintf(stderr, "kaiser backup: %v\n", err)
		return 1
	}
	defer os.Remove(tmp.Name())
	err = sqlite.Backup(context.Background(), *dataDir, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *to)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kaiser backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "backup of %s written to %s\n", *dataDir, *to)
	return 0
}

// restoreCmd is `kaiser restore`: unpack a backup into an empty data
// directory (the hub must not be running on it).
func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr("KAISER_DATA_DIR", "./data"), "data directory to restore into (no database in it yet)")
	from := fs.String("from", "", "archive written by kaiser backup")
	database := fs.String("database", os.Getenv("KAISER_DATABASE"), "the hub's --database; PostgreSQL is refused")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if refusePostgres(stderr, "restore", *database) {
		return 2
	}
	if *from == "" {
		fmt.Fprintln(stderr, "kaiser restore: --from FILE is required")
		return 2
	}
	f, err := os.Open(*from)
	if err != nil {
		fmt.Fprintf(stderr, "kaiser restore: %v\n", err)
		return 1
	}
	defer f.Close()
	if err := sqlite.Restore(context.Background(), f, *dataDir); err != nil {
		fmt.Fprintf(stderr, "kaiser restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", *from, *dataDir)
	return 0
}

// refusePostgres says so and reports true when the hub's database is
// PostgreSQL: backup and restore copy SQLite files, and a hub on
// PostgreSQL has none to copy (docs/decisions/0026-hub-on-postgres.md).
func refusePostgres(stderr io.Writer, cmd, database string) bool {
	if !hub.IsPostgresURL(database) {
		return false
	}
	fmt.Fprintf(stderr, "kaiser %s: the hub's database is PostgreSQL (--database / KAISER_DATABASE); "+
		"kaiser %s copies SQLite files only: use pg_dump and pg_restore (docs/decisions/0026-hub-on-postgres.md)\n", cmd, cmd)
	return true
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
