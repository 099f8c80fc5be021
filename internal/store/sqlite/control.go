package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// controlFile is the control database's file name in the data directory.
const controlFile = "control.db"

// moveControlVersion is the main migration that drops the control tables.
const moveControlVersion = 8

// controlTables are the tables that moved from the main database into the
// control database; both define them with the same columns in the same order.
var controlTables = []string{
	"actuator_configs",
	"actuator_states",
	"actuator_history",
	"emergency_latches",
	"emergency_tokens",
}

// moveControlTables copies the control tables' rows of a database created
// before the split into the control database. It runs before main migration
// 8 drops them; if the hub stops between the two, the next start copies
// again and the rows already there are kept (INSERT OR IGNORE), so nothing
// is lost or doubled. A new database has the tables from migrations 5 and 6
// but no rows.
func moveControlTables(ctx context.Context, db *sql.DB, controlPath string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("move control tables: %w", err)
	}
	defer conn.Close()

	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS control`, controlPath); err != nil {
		return fmt.Errorf("attach control database: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE control`)

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("move control tables: %w", err)
	}
	defer tx.Rollback()
	for _, t := range controlTables {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control.`+t+` SELECT * FROM main.`+t); err != nil {
			return fmt.Errorf("copy %s into the control database: %w", t, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("move control tables: %w", err)
	}
	return nil
}
