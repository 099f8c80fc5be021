package sqlite

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func countReadings(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.read.QueryRow(`SELECT COUNT(*) FROM readings`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A backup taken while readings stream in holds everything committed before
// it began, restores into an empty directory as a store that opens, and
// carries the control database too.
func TestBackupWhileIngestingAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	sid, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_A1B2C3", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	latch := store.EmergencyLatch{
		Scope:       store.LatchGlobal,
		Active:      true,
		Reason:      "flood",
		ActivatedBy: "operator",
		ActivatedAt: now,
		UpdatedAt:   now,
		Version:     1,
	}
	if err := s.SaveLatches(ctx, []store.EmergencyLatch{latch}); err != nil {
		t.Fatal(err)
	}

	sink := s.NewReadingSink(0, nil)
	const total = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ts := int64(1); ts <= total; ts++ {
			if err := sink.Add(ctx, store.Reading{SeriesID: sid, TS: ts, Raw: 7, Quality: "good", ReceivedAt: ts}); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	// Wait until some readings are committed, then back up mid-stream.
	for countReadings(t, s) < 500 {
		if err := sink.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := countReadings(t, s)
	var archive bytes.Buffer
	if err := Backup(ctx, dir, &archive); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if after := countReadings(t, s); after != total {
		t.Fatalf("the backup cost readings: %d of %d stored", after, total)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	target := t.TempDir()
	if err := Restore(ctx, bytes.NewReader(archive.Bytes()), target); err != nil {
		t.Fatal(err)
	}
	r := open(t, target)
	defer r.Close(ctx)
	if n := countReadings(t, r); n < before || n > total {
		t.Fatalf("restored %d readings, %d were committed before the backup (of %d)", n, before, total)
	}
	latches, err := r.LoadLatches(ctx)
	if err != nil || len(latches) != 1 || !latches[0].Active {
		t.Fatalf("control database not restored: %+v %v", latches, err)
	}

	// A restore never overwrites a site's data.
	if err := Restore(ctx, bytes.NewReader(archive.Bytes()), target); !errors.Is(err, ErrDataExists) {
		t.Fatalf("restore over data: %v", err)
	}
}

// A crafted archive cannot write outside the target or smuggle other files.
func TestRestoreRefusesForeignMembers(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("x")
	if err := tw.WriteHeader(&tar.Header{Name: "../kaiser.db", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	if err := Restore(context.Background(), &buf, t.TempDir()); err == nil {
		t.Fatal("an archive member outside the known files was accepted")
	}
}

// Flush returns once what was queued before it is committed, even while a
// producer never pauses (it used to drain until the queue was empty, which
// such a producer never lets happen).
func TestReadingFlushWithAProducerThatNeverPauses(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	sid, err := s.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_A1B2C3", GPIO: 34, SensorType: "ph"})
	if err != nil {
		t.Fatal(err)
	}
	sink := s.NewReadingSink(256, nil)
	if err := sink.Add(ctx, store.Reading{SeriesID: sid, TS: 0, Quality: "good"}); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ts := int64(1); ; ts++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := sink.Add(ctx, store.Reading{SeriesID: sid, TS: ts, Quality: "good"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	if n := countReadings(t, s); n < 1 {
		t.Fatalf("the reading added before the flush is not committed (%d rows)", n)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
