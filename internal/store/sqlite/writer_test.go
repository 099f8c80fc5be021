package sqlite

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// holdWriter keeps the writer inside a transaction until release is
// closed, and returns once it is held.
func holdWriter(t *testing.T, w *Writer) (release chan struct{}) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = w.Do(context.Background(), func(context.Context, *Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	return release
}

// A caller that stops waiting while its op is still queued withdraws it:
// Do answers the context's error and the op never runs, so nothing writes
// into the caller's variables after Do returned (a data race before).
func TestDoWithdrawsAQueuedOpWhoseCallerLeft(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	w := s.Writer()
	release := holdWriter(t, w)

	cctx, cancel := context.WithCancel(ctx)
	ran := false // written by the op, read after Do returned
	result := make(chan error, 1)
	go func() {
		result <- w.Do(cctx, func(context.Context, *Tx) error { ran = true; return nil })
	}()
	for w.Depth() == 0 { // queued behind the held transaction
		runtime.Gosched()
	}
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do answered %v", err)
	}
	close(release)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("a withdrawn op ran after its caller had gone")
	}
}

// A caller whose op has started waits for its transaction even if its
// context ends meanwhile, and learns the write's real outcome.
func TestDoWaitsForAStartedOpAndTellsItsOutcome(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	w := s.Writer()

	cctx, cancel := context.WithCancel(ctx)
	started, release := make(chan struct{}), make(chan struct{})
	var n int64
	result := make(chan error, 1)
	go func() {
		result <- w.Do(cctx, func(_ context.Context, tx *Tx) error {
			close(started)
			<-release
			n = 7
			return insertTransition(tx, "started", 0)
		})
	}()
	<-started
	cancel()
	close(release)
	if err := <-result; err != nil {
		t.Fatalf("a started op's commit answered %v", err)
	}
	if n != 7 {
		t.Fatalf("read %d after Do returned", n)
	}
}
