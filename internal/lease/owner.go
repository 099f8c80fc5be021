package lease

import "context"

// Owner grants this replica terms of named leases: a Manager among
// replicas on PostgreSQL, Solo for a hub alone.
type Owner interface {
	// Await returns once this replica holds the lease, with its term.
	Await(ctx context.Context, name string) (*Term, error)
}

var (
	_ Owner = (*Manager)(nil)
	_ Owner = Solo{}
)

// Solo is the Owner of a hub that runs alone (embedded broker, SQLite): it
// holds every lease, in one term that never ends.
type Solo struct{}

// Await returns the lease's only term at once.
func (Solo) Await(ctx context.Context, name string) (*Term, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Term{Name: name, Holder: "solo", Epoch: 1}, nil
}

// Hold runs work in every term of the lease that o grants, one term at a
// time, with a context that ends when the term is lost or ctx ends; it
// returns when ctx ends. Work that returns while its term lasts runs again
// only in the next term. Hold returns an error only when o refuses the
// lease name.
func Hold(ctx context.Context, o Owner, name string, work func(ctx context.Context, t *Term)) error {
	for {
		t, err := o.Await(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-t.Lost():
				cancel()
			case <-wctx.Done():
			}
		}()
		work(wctx, t)
		cancel()
		select {
		case <-t.Lost():
		case <-ctx.Done():
			return nil
		}
	}
}
