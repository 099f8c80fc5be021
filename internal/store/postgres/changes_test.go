package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
)

// watcher runs WatchChanges (probing after idle) until the test ends and
// hands out the changes it reports.
type watcher struct {
	c     chan postgres.Change
	marks int
}

func watch(t *testing.T, s *postgres.Store, idle time.Duration) *watcher {
	t.Helper()
	w := &watcher{c: make(chan postgres.Change, 256)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WatchChangesIdle(ctx, func(c postgres.Change) { w.c <- c }, idle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchChanges returned %v after its context ended", err)
		}
	})
	return w
}

// next is the next change reported, failing t after 10 s.
func (w *watcher) next(t *testing.T) postgres.Change {
	t.Helper()
	select {
	case c := <-w.c:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10 s")
		return postgres.Change{}
	}
}

// quiet fails t if anything was announced since the last change taken: it
// sends a marker notice, which must be the next change reported.
func (w *watcher) quiet(t *testing.T, s *postgres.Store, after string) {
	t.Helper()
	w.marks++
	mark := fmt.Sprintf("MARK_%d", w.marks)
	if _, err := s.Pool().Exec(context.Background(), `SELECT pg_notify('kaiser_changes', $1)`, "device:"+mark); err != nil {
		t.Fatal(err)
	}
	w.expect(t, deviceChange(mark), after)
}

// expect fails t unless the next change reported is want.
func (w *watcher) expect(t *testing.T, want postgres.Change, after string) {
	t.Helper()
	if got := w.next(t); got != want {
		t.Fatalf("after %s: change %+v, want %+v", after, got, want)
	}
}

func saveDevice(t *testing.T, s *postgres.Store, d store.Device) {
	t.Helper()
	ctx := context.Background()
	c := store.NewCommits()
	err := s.SaveDevice(store.WithCommits(ctx, c), d)
	c.Seal()
	if err == nil {
		err = c.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("save of %s version %d: %v", d.DeviceID, d.Version, err)
	}
}

func deviceChange(id string) postgres.Change {
	return postgres.Change{Kind: postgres.ChangeDevice, EspID: id}
}

func sensorsChange(id string) postgres.Change {
	return postgres.Change{Kind: postgres.ChangeSensors, EspID: id}
}

// Committed changes of devices and sensor configs are announced in commit
// order; the saves every heartbeat makes (last seen, version, telemetry in
// the metadata) are not. A change that makes no notice is shown by the
// next notice being the following change's.
func TestChangeNotices(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	w := watch(t, s, 30*time.Second)
	w.expect(t, postgres.Change{Kind: postgres.ChangeAll}, "connecting")

	now := time.Now().UTC().Truncate(time.Millisecond)
	d := store.Device{ID: "u-1", DeviceID: "ESP_A1", Status: "pending_approval", Metadata: map[string]any{
		"heartbeat_count": 1,
	}, CreatedAt: now, UpdatedAt: now, Version: 1}
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_A1"), "a discovery")

	beat := func(at time.Time, md map[string]any) {
		t.Helper()
		d.Version++
		d.LastSeen, d.UpdatedAt = &at, at
		d.Metadata = md
		saveDevice(t, s, d)
	}
	beat(now.Add(time.Minute), map[string]any{"heartbeat_count": 2, "last_uptime": 60, "last_heartbeat": "x"})
	w.quiet(t, s, "a pending device's heartbeat")
	d.Status = "approved"
	d.ApprovedAt, d.ApprovedBy = &now, "admin"
	d.Version++
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_A1"), "the approval")

	beat(now.Add(2*time.Minute), map[string]any{"last_uptime": 120, "last_wifi_rssi": -60})
	// A device's reported string with a NUL, which jsonb refuses, must not
	// fail the save, and does not make a notice of a heartbeat either.
	beat(now.Add(3*time.Minute), map[string]any{"last_uptime": 180, "system_state": "OK\x00"})
	beat(now.Add(4*time.Minute), map[string]any{"last_uptime": 240, "system_state": "OK\x00"})
	w.quiet(t, s, "heartbeats")
	d.Status = "online"
	d.Version++
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_A1"), "going online")

	beat(now.Add(5*time.Minute), map[string]any{"last_uptime": 300,
		"alert_config": map[string]any{"alerts_enabled": false}})
	w.expect(t, deviceChange("ESP_A1"), "a change of the alert_config")
	beat(now.Add(6*time.Minute), map[string]any{"last_uptime": 360,
		"alert_config": map[string]any{"alerts_enabled": false}})
	w.quiet(t, s, "a heartbeat that kept the alert_config")

	doc := store.Doc{ID: "c-1", EspID: "ESP_A1", GPIO: 4, Kind: "ds18b20", JSON: []byte(`{"id":"c-1"}`),
		CreatedAt: now, UpdatedAt: now}
	if err := s.SaveSensorConfig(ctx, doc); err != nil {
		t.Fatal(err)
	}
	w.expect(t, sensorsChange("ESP_A1"), "a new sensor config")
	doc.JSON, doc.UpdatedAt = []byte(`{"id":"c-1","name":"soil"}`), now.Add(time.Second)
	if err := s.SaveSensorConfig(ctx, doc); err != nil {
		t.Fatal(err)
	}
	w.expect(t, sensorsChange("ESP_A1"), "a changed sensor config")

	// A config moved to another device is announced for both.
	doc.EspID = "ESP_B2"
	if err := s.SaveSensorConfig(ctx, doc); err != nil {
		t.Fatal(err)
	}
	got := map[postgres.Change]bool{w.next(t): true, w.next(t): true}
	if !got[sensorsChange("ESP_A1")] || !got[sensorsChange("ESP_B2")] {
		t.Fatalf("after moving a config: %v", got)
	}
	if err := s.DeleteSensorConfig(ctx, doc.ID); err != nil {
		t.Fatal(err)
	}
	w.expect(t, sensorsChange("ESP_B2"), "a deleted sensor config")

	// A new series is announced; ensuring an existing one is not.
	key := store.SeriesKey{EspID: "ESP_A1", GPIO: 4, SensorType: "ds18b20"}
	if _, err := s.EnsureSeries(ctx, key); err != nil {
		t.Fatal(err)
	}
	w.expect(t, sensorsChange("ESP_A1"), "a new series")
	if _, err := s.EnsureSeries(ctx, key); err != nil {
		t.Fatal(err)
	}
	w.quiet(t, s, "an existing series ensured")

	if err := s.PurgeDevice(ctx, "ESP_A1", d.Version); err != nil {
		t.Fatal(err)
	}
	w.expect(t, deviceChange("ESP_A1"), "a purge")

	select {
	case c := <-w.c:
		t.Fatalf("unexpected change %+v", c)
	default:
	}
}

// A listener whose connection is killed reconnects and reports ChangeAll,
// since notices may have been lost meanwhile, and then hears notices
// again; one idle past its probe interval keeps its connection and hears
// every notice.
func TestChangeListenerReconnects(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	w := watch(t, s, 200*time.Millisecond)
	w.expect(t, postgres.Change{Kind: postgres.ChangeAll}, "connecting")

	now := time.Now().UTC()
	d := store.Device{ID: "u-2", DeviceID: "ESP_C3", Status: "approved", Metadata: map[string]any{},
		CreatedAt: now, UpdatedAt: now, Version: 1}
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_C3"), "a registration")

	// Probes pass while nothing happens (the listener's last statement is
	// the probe's); the connection stays.
	pid, last := listener(t, s)
	time.Sleep(time.Second) // idle time is the subject here: five probe intervals
	if p, q := listener(t, s); p != pid || q != "SELECT 1" {
		t.Fatalf("listener %d (last statement %q) is %d after idling, last statement %q", pid, last, p, q)
	}
	d.Status, d.Version = "rejected", 2
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_C3"), "idle probes, then a rejection")

	var killed bool
	if err := s.Pool().QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate listener %d: %v %v", pid, killed, err)
	}
	w.expect(t, postgres.Change{Kind: postgres.ChangeAll}, "the connection was killed")
	if p, _ := listener(t, s); p == pid {
		t.Fatalf("listener still on the killed connection %d", pid)
	}
	d.Status, d.Version = "approved", 3
	saveDevice(t, s, d)
	w.expect(t, deviceChange("ESP_C3"), "reconnecting, then an approval")
}

// listener is the server process of the listener's connection to the
// store's database and the last statement it ran; a killed connection
// that has not quite gone yet is passed over.
func listener(t *testing.T, s *postgres.Store) (pid int32, query string) {
	t.Helper()
	err := s.Pool().QueryRow(context.Background(), `SELECT pid, query FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database() ORDER BY backend_start DESC LIMIT 1`,
		postgres.WatchApp).Scan(&pid, &query)
	if err != nil {
		t.Fatalf("listener connection: %v", err)
	}
	return pid, query
}
