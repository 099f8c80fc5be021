package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/store/transfer"
)

// migrateStoreCmd is `kaiser migrate-store --from sqlite:DIR --to
// postgres://…`: the site's SQLite store copied into an empty PostgreSQL
// database (docs/decisions/0026-hub-on-postgres.md). The hub must be stopped.
func migrateStoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "sqlite:DIR, the stopped hub's data directory")
	to := fs.String("to", "", "postgres://user@host:port/db?sslmode=... (default: KAISER_DATABASE); "+
		"a password only in KAISER_DATABASE, --to-password-file or ~/.pgpass")
	passwordFile := fs.String("to-password-file", os.Getenv("KAISER_DATABASE_PASSWORD_FILE"),
		"file with the PostgreSQL password")
	replace := fs.Bool("replace", false, "empty a PostgreSQL database that already holds hub data (it is refused otherwise)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, ok := strings.CutPrefix(*from, "sqlite:")
	if !ok || dir == "" {
		fmt.Fprintln(stderr, "kaiser migrate-store: --from sqlite:DIR is required (the data directory of the stopped hub)")
		return 2
	}
	dsn := *to
	if dsn == "" {
		dsn = os.Getenv("KAISER_DATABASE")
	} else if u, err := url.Parse(dsn); err == nil {
		if _, has := u.User.Password(); has {
			fmt.Fprintln(stderr, "kaiser migrate-store: --to: a password on the command line is visible to every user "+
				"of the machine; give it in KAISER_DATABASE, --to-password-file or ~/.pgpass")
			return 2
		}
	}
	if !hub.IsPostgresURL(dsn) {
		fmt.Fprintln(stderr, "kaiser migrate-store: --to postgres://… (or KAISER_DATABASE) is required")
		return 2
	}
	var password string
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			fmt.Fprintf(stderr, "kaiser migrate-store: --to-password-file: %v\n", err)
			return 2
		}
		password = strings.TrimRight(string(b), "\r\n")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "copying the SQLite store in %s into PostgreSQL; the hub must be stopped\n", dir)
	rep, err := transfer.SQLiteToPostgres(ctx, dir, dsn, transfer.Options{
		Password: password,
		Replace:  *replace,
		Progress: func(table string, rows int64) { fmt.Fprintf(stderr, "  %-20s %d rows\n", table, rows) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "kaiser migrate-store: %v\n", err)
		if errors.Is(err, transfer.ErrHubRunning) || errors.Is(err, transfer.ErrTargetNotEmpty) {
			return 2
		}
		fmt.Fprintln(stderr, "kaiser migrate-store: nothing was committed to PostgreSQL")
		return 1
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "table\tSQLite rows\tPostgreSQL rows\t")
	for _, c := range rep.Tables {
		fmt.Fprintf(w, "%s\t%d\t%d\t\n", c.Table, c.Source, c.Target)
	}
	w.Flush()
	fmt.Fprintf(stdout, "copied %d rows of %d tables in %s; every count matches. Start the hub with "+
		"--database (KAISER_DATABASE) set to this database.\n", rep.Rows(), len(rep.Tables), rep.Duration.Round(1e6))
	return 0
}
