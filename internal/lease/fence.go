package lease

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrFenced means a term is over: another replica may hold the lease, so
// the transaction must not commit its singleton effects.
var ErrFenced = errors.New("lease term is over")

// Fence checks, inside tx, that t is still the lease's current, unexpired
// term, and keeps it so until tx ends: it takes the row's FOR KEY SHARE
// lock, which a takeover (it changes the epoch, a key column) waits for,
// while the holder's renewals do not. So every commit of a term's fenced
// transactions precedes the next term's start. Call it before tx's
// singleton writes and roll back on error; keep such transactions short,
// since a takeover waits for them.
func Fence(ctx context.Context, tx pgx.Tx, t *Term) error {
	var epoch int64
	err := tx.QueryRow(ctx, `
		SELECT epoch FROM leases
		WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()
		FOR KEY SHARE`, t.Name, t.Holder, t.Epoch).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("lease %s epoch %d: %w", t.Name, t.Epoch, ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("fence lease %s: %w", t.Name, err)
	}
	return nil
}
