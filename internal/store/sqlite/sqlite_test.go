package sqlite

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/store"
)

// A closed store must leave no writer, checkpointer or pool goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMigrationsAndDeviceRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	v, err := s.SchemaVersion(ctx)
	if err != nil || v < 1 {
		t.Fatalf("schema version %d %v", v, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := store.Device{
		ID:           "u1",
		DeviceID:     "ESP_A1B2C3",
		Status:       "pending_approval",
		Metadata:     map[string]any{"heartbeat_count": 1.0},
		LastSeen:     &now,
		DiscoveredAt: &now,
		CreatedAt:    now,
		UpdatedAt:    now,
		Version:      1,
	}
	if err := s.SaveDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Status, d.Version = "approved", 2
	if err := s.SaveDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Reopen: migrations are not re-applied and the upsert survived.
	s = open(t, dir)
	defer s.Close(ctx)
	devs, err := s.LoadDevices(ctx)
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v %v", devs, err)
	}
	got := devs[0]
	if got.Status != "approved" || got.Version != 2 || !got.LastSeen.Equal(now) || got.Metadata["heartbeat_count"] != 1.0 {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestGroupCommitIsolatesFailingOp(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close(ctx)
	w := s.Writer()
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = w.Do(ctx, func(_ context.Context, tx *Tx) error {
				if i == 17 {
					return errors.New("boom")
				}
				_, err := tx.Exec(`
					INSERT INTO device_transitions (device_id, from_state, to_state, cause, at)
					VALUES (?,?,?,?,?)`,
					"D", "a", "b", "c", i)
				return err
			})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 17) != (err != nil) {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	tr, err := s.Transitions(ctx, "D")
	if err != nil || len(tr) != 49 {
		t.Fatalf("want 49 committed rows, got %d %v", len(tr), err)
	}
}

func TestCloseDrainsQueuedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	for i := 0; i < 5000; i++ {
		if err := s.AppendHeartbeat(ctx, store.Heartbeat{
			DeviceID:   "D",
			ReceivedAt: time.Now(),
			DeviceTime: time.Now(),
			TimeSource: "hub",
			Uptime:     int64(i),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHeartbeat(ctx, store.Heartbeat{DeviceID: "D"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	s = open(t, dir)
	defer s.Close(ctx)
	ups, err := s.HeartbeatUptimes(ctx, "D")
	if err != nil || len(ups) != 5000 {
		t.Fatalf("want 5000 rows after close, got %d %v", len(ups), err)
	}
	for i, u := range ups {
		if u != int64(i) {
			t.Fatalf("order broken at %d: %d", i, u)
		}
	}
}
