package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Fire-and-forget writes queued with a context carrying store.Commits
// report their commit there: Wait returns only once the rows are readable
// through the read pool (which sees committed data only), and a failed
// write fails the wait.
func TestSubmittedWritesReportTheirCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	w := s.Writer()

	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = w.Do(ctx, func(context.Context, *Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started

	c := store.NewCommits()
	wctx := store.WithCommits(ctx, c)
	for i := range 3 {
		if err := w.Submit(wctx, func(_ context.Context, tx *Tx) error {
			return insertTransition(tx, "tracked", i)
		}); err != nil {
			t.Fatal(err)
		}
	}
	c.Seal()
	select {
	case <-c.Done():
		t.Fatal("the commits were reported while the writer was still held")
	default:
	}
	close(release)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM device_transitions WHERE cause = 'tracked'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d rows readable after the wait, want 3", n)
	}

	failed := store.NewCommits()
	bad := errors.New("constraint")
	if err := w.Submit(store.WithCommits(ctx, failed), func(context.Context, *Tx) error { return bad }); err != nil {
		t.Fatal(err)
	}
	failed.Seal()
	if err := failed.Wait(ctx); !errors.Is(err, bad) {
		t.Fatalf("wait after a failed write: %v", err)
	}
}

// A reading added with store.Commits reports the transaction that stores
// it: success once the row is readable, the error when the insert fails.
func TestSinkReportsReadingCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	id, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_1", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	sink := s.NewReadingSink(16, nil)
	defer sink.Close(ctx)
	r := store.Reading{SeriesID: id, TS: 1000, Raw: 1, Unit: "pH", Quality: "good", Mode: "raw",
		TimeSource: "device", Source: "mqtt"}

	c := store.NewCommits()
	if err := sink.Add(store.WithCommits(ctx, c), r); err != nil {
		t.Fatal(err)
	}
	c.Seal()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountReadings(ctx, id, 0); err != nil || n != 1 {
		t.Fatalf("readings after the wait: %d, %v", n, err)
	}

	// A table the insert cannot write makes the transaction fail.
	if err := s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
		_, err := tx.Exec(`DROP TABLE readings`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	failed := store.NewCommits()
	r.TS = 2000
	if err := sink.Add(store.WithCommits(ctx, failed), r); err != nil {
		t.Fatal(err)
	}
	failed.Seal()
	if err := failed.Wait(ctx); err == nil {
		t.Fatal("a reading whose insert failed reported success")
	}
}

// capPages forbids the main database to grow (PRAGMA max_page_count on
// the writer's connection) or, with capped false, lifts that again: SQLite
// fails a write that needs a new page with SQLITE_FULL, as on a full disk.
func capPages(t *testing.T, s *Store, capped bool) {
	t.Helper()
	if err := s.writer.Do(context.Background(), func(_ context.Context, tx *Tx) error {
		limit := int64(1 << 30)
		if capped {
			if err := tx.QueryRow("PRAGMA page_count").Scan(&limit); err != nil {
				return err
			}
		}
		var n int64
		return tx.QueryRow(fmt.Sprintf("PRAGMA max_page_count = %d", limit)).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
}

// A database that cannot grow is reported as unable to commit until a
// transaction with writes commits again; a refused operation (a
// constraint) or an empty flush says nothing either way.
func TestCommitFaultFollowsTransactionsWithWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	write := func(size int) error {
		return s.writer.Do(ctx, func(_ context.Context, tx *Tx) error {
			return insertTransition(tx, strings.Repeat("x", size), 0)
		})
	}
	if err := write(10); err != nil || s.CommitFault() != nil {
		t.Fatalf("healthy store: %v, fault %v", err, s.CommitFault())
	}
	if err := s.writer.Do(ctx, func(context.Context, *Tx) error { return errors.New("refused") }); err == nil {
		t.Fatal("refused operation succeeded")
	}
	if s.CommitFault() != nil {
		t.Fatalf("a refused operation counted as a storage fault: %v", s.CommitFault())
	}

	capPages(t, s, true)
	if err := write(4 << 20); err == nil {
		t.Fatal("4 MiB written to a database that cannot grow")
	}
	if s.CommitFault() == nil {
		t.Fatal("a database that cannot grow is not reported")
	}
	if err := s.Flush(ctx); err != nil || s.CommitFault() == nil {
		t.Fatalf("an empty flush cleared the fault (flush %v)", err)
	}
	capPages(t, s, false)
	if err := write(4 << 20); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitFault(); err != nil {
		t.Fatalf("fault after a commit: %v", err)
	}
}

// A commit someone waits for (DoPrompt) does not wait for its batch to
// fill: with an hour of BatchWait it still commits, taking along what is
// queued with it.
func TestPromptCommitDoesNotWaitToFill(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{BatchWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.writer.DoPrompt(ctx, func(_ context.Context, tx *Tx) error { return insertTransition(tx, "prompt", 0) })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a prompt commit waited for its batch to fill")
	}
}
