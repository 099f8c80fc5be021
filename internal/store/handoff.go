package store

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Handoff is the agreement between a caller waiting for a queued write and
// the writer that runs it. Callers read what their op wrote into captured
// variables once the wait returns, so an op must never run after that: a
// caller whose context ends while the op is still queued withdraws it (it
// will not run), and one whose op has started waits for its transaction,
// which then reports the write's real outcome instead of the context's
// error. The SQLite and PostgreSQL writers both use it.
type Handoff struct {
	state atomic.Int32
}

const (
	opQueued int32 = iota
	opStarted
	opWithdrawn
)

// Start is called by the writer before it runs the op: false means the
// caller withdrew it and it must be skipped. A batch that failed runs each
// op again on its own, so a started op stays startable.
func (h *Handoff) Start() bool {
	return h.state.CompareAndSwap(opQueued, opStarted) || h.state.Load() == opStarted
}

// Wait waits for the op's outcome on done, or withdraws it when ctx ends
// first; an op already started is waited for.
func (h *Handoff) Wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if h.state.CompareAndSwap(opQueued, opWithdrawn) {
			return fmt.Errorf("waiting for commit: %w", ctx.Err())
		}
		return <-done
	}
}
