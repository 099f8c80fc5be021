package sqlite

import (
	"context"
	"fmt"
	"testing"
)

// An urgent request queued behind normal ones is committed before them:
// the writer is held inside a first transaction while normal requests and
// then an urgent one queue up; once released, every normal request must
// already see the urgent row committed (read through the read pool, which
// sees only committed data).
func TestUrgentCommitsBeforeQueuedNormal(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	w := s.Writer()

	started, release := make(chan struct{}), make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- w.Do(ctx, func(_ context.Context, tx *Tx) error {
			close(started)
			<-release
			return insertTransition(tx, "blocker", 0)
		})
	}()
	<-started

	const normals = 5
	order := make([]string, 0, normals+1) // written by the writer goroutine only
	sawUrgent := make([]bool, normals)
	var dones []chan error
	for i := range normals {
		done := make(chan error, 1)
		dones = append(dones, done)
		op := func(_ context.Context, tx *Tx) error {
			order = append(order, fmt.Sprintf("normal %d", i))
			var n int
			err := s.read.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM device_transitions WHERE cause = 'urgent'`).Scan(&n)
			if err != nil {
				return err
			}
			sawUrgent[i] = n == 1
			return insertTransition(tx, "normal", i)
		}
		if err := w.enqueue(ctx, w.queue, request{op: op, done: done}); err != nil {
			t.Fatal(err)
		}
	}

	urgent := make(chan error, 1)
	op := func(_ context.Context, tx *Tx) error {
		order = append(order, "urgent")
		return insertTransition(tx, "urgent", 0)
	}
	if err := w.enqueue(ctx, w.urgent, request{op: op, done: urgent}); err != nil {
		t.Fatal(err)
	}
	close(release)

	for _, c := range append([]chan error{blocker, urgent}, dones...) {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if len(order) != normals+1 || order[0] != "urgent" {
		t.Fatalf("run order %v: want the urgent request first", order)
	}
	for i, saw := range sawUrgent {
		if !saw {
			t.Errorf("normal request %d ran before the urgent one was committed", i)
		}
	}
}

func insertTransition(tx *Tx, cause string, at int) error {
	_, err := tx.Exec(`
		INSERT INTO device_transitions (device_id, from_state, to_state, cause, at)
		VALUES (?,?,?,?,?)`,
		"D", "a", "b", cause, at)
	return err
}
