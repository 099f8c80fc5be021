package hub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// Durable acknowledgement (docs/protocol.md M3): a QoS 1 PUBACK means the
// reading is committed.

// readingAt is a pH reading of gpio 34 of id whose device time is ts
// (unix seconds): distinct ts are distinct rows.
func readingAt(id string, raw int, ts int64) string {
	return fmt.Sprintf(`{"esp_id":"%s","gpio":34,"sensor_type":"ph","raw":%d,"value":6.5,`+
		`"unit":"pH","quality":"good","ts":%d,"raw_mode":true}`, id, raw, ts)
}

func readingTopic(id string) string { return "kaiser/god/esp/" + id + "/sensor/34/data" }

// registerDevice pre-registers an approved device through the API.
func registerDevice(t *testing.T, c apiClient, tok, id string) {
	t.Helper()
	if r := c.do("POST", "/api/v1/esp/devices", tok, map[string]any{"device_id": id}); r.status != 201 {
		t.Fatalf("register %s: %d %s", id, r.status, r.raw)
	}
}

// storedTimes returns the device times (unix seconds) of id's stored pH
// readings of gpio 34.
func storedTimes(t *testing.T, st Store, id string) map[int64]bool {
	t.Helper()
	ctx := context.Background()
	series, err := st.LoadSeries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sid, ok := series[store.SeriesKey{EspID: id, GPIO: 34, SensorType: "ph"}]
	if !ok {
		return map[int64]bool{}
	}
	rows, err := st.QueryReadings(ctx, store.RawQuery{Series: []int64{sid}, Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]bool{}
	for _, r := range rows {
		out[r.TS/1000] = true
	}
	return out
}

// holdWriter blocks the main database's writer inside a transaction until
// the returned release is called: nothing commits meanwhile.
func holdWriter(t *testing.T, h *Hub) (release func()) {
	t.Helper()
	started, done := make(chan struct{}), make(chan struct{})
	err := h.SQLite.Writer().Submit(context.Background(), func(context.Context, *sqlite.Tx) error {
		close(started)
		<-done
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(release)
	return release
}

// asyncPublish publishes at QoS 1 and reports the PUBACK's outcome.
func asyncPublish(c *client, topic, payload string) <-chan error {
	out := make(chan error, 1)
	go func() { out <- c.publish(topic, payload, false) }()
	return out
}

// The PUBACK of a QoS 1 reading waits for its commit, while the live
// sensor_data event does not: with the writer held, the event arrives and
// the PUBACK does not; released, the PUBACK follows and the row is there.
func TestQoS1PubackWaitsForTheCommitButLiveEventsDoNot(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	const id = "ESP_A1B2C3"
	registerDevice(t, c, admin, id)
	dev := mustDial(t, h.MQTTAddr(), id)
	base := time.Now().Unix() - 3600
	if err := dev.publish(readingTopic(id), readingAt(id, 1, base), false); err != nil {
		t.Fatal(err) // creates the series: its creation waits for the writer
	}
	if !storedTimes(t, h.Store, id)[base] {
		t.Fatal("an acknowledged reading is not stored")
	}

	live := h.Events.Subscribe(64, event.TypeSensorData)
	defer h.Events.Unsubscribe(live)
	release := holdWriter(t, h)
	acked := asyncPublish(dev, readingTopic(id), readingAt(id, 2, base+1))
	awaitEvent(t, live, 5*time.Second, func(e event.Event) bool {
		d, ok := sensorData(e)
		return ok && d.RawValue == 2
	})
	select {
	case err := <-acked:
		t.Fatalf("PUBACK while the reading's commit is held (%v)", err)
	default:
	}
	release()
	if err := <-acked; err != nil {
		t.Fatalf("publish: %v", err)
	}
	if !storedTimes(t, h.Store, id)[base+1] {
		t.Fatal("the reading acknowledged after the commit is not stored")
	}
}

// An unpaced QoS 1 publisher (64 messages in flight) never loses an
// acknowledged reading to the drop-oldest of its device queue (8 here):
// the hub takes its messages one at a time, as their commits allow. The
// writer is held while the burst arrives, so that without the wait the
// queue overflows for certain.
func TestUnpacedQoS1PublisherLosesNoAcknowledgedReading(t *testing.T) {
	h, c := apiHub(t, Config{Ingest: ingest.Config{QueueCapacity: 8}})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	const id, n = "ESP_A1B2C3", 200
	registerDevice(t, c, admin, id)
	dev := mustDial(t, h.MQTTAddr(), id)

	release := holdWriter(t, h)
	base := time.Now().Unix() - 3600
	var acked atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dev.publish(readingTopic(id), readingAt(id, i, base+int64(i)), false); err == nil {
				acked.Add(1)
			}
		}()
	}
	// Without durable acknowledgement every PUBACK arrives while the
	// writer is held; with it, one message waits for its settlement.
	deadline := time.Now().Add(10 * time.Second)
	for acked.Load() < n && h.Broker.Settling() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("neither acknowledged nor waiting for a commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	wg.Wait()

	stored := storedTimes(t, h.Store, id)
	if got := acked.Load(); got != n || len(stored) != n {
		t.Fatalf("%d acknowledged, %d stored, %d sent: every acknowledged reading must be stored", got, len(stored), n)
	}
}

// fillStore makes the main database full: it may not grow beyond its
// current pages (PRAGMA max_page_count on the writer's connection), and
// filler rows take the free pages it has, so that SQLite fails a write
// that needs a page with SQLITE_FULL, as on a full disk. The returned
// function lifts the cap again.
func fillStore(t *testing.T, h *Hub) (unfill func()) {
	t.Helper()
	ctx := context.Background()
	w := h.SQLite.Writer()
	maxPages := func(n string) func(context.Context, *sqlite.Tx) error {
		return func(_ context.Context, tx *sqlite.Tx) error {
			if n == "" {
				if err := tx.QueryRow("PRAGMA page_count").Scan(&n); err != nil {
					return err
				}
			}
			var got int64
			return tx.QueryRow("PRAGMA max_page_count = " + n).Scan(&got)
		}
	}
	if err := w.Do(ctx, func(_ context.Context, tx *sqlite.Tx) error {
		_, err := tx.Exec("CREATE TABLE IF NOT EXISTS test_filler (b BLOB)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Do(ctx, maxPages("")); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		err := w.Do(ctx, func(_ context.Context, tx *sqlite.Tx) error {
			_, err := tx.Exec("INSERT INTO test_filler VALUES (zeroblob(3000))")
			return err
		})
		if err != nil {
			break
		}
		if i > 100000 {
			t.Fatal("the capped database never filled")
		}
	}
	return func() {
		if err := w.Do(ctx, maxPages("1073741823")); err != nil {
			t.Fatal(err)
		}
	}
}

func readiness(t *testing.T, c apiClient) (int, map[string]any) {
	t.Helper()
	r := c.do("GET", "/api/v1/health/ready", "", nil)
	checks, _ := r.body["checks"].(map[string]any)
	return r.status, checks
}

// With the database full, nothing that is not stored is acknowledged: the
// hub is not ready, a registration is not answered 201, and QoS 1 readings
// stop being acknowledged at the first that cannot be stored (every one
// acknowledged is stored). Once the database can grow again, the next
// commit makes the hub ready.
func TestFullStoreAcknowledgesNothingItDidNotStore(t *testing.T) {
	h, c := apiHub(t, Config{})
	defer stopHub(t, h)
	admin, _, _ := setupUsers(t, c)
	const id = "ESP_A1B2C3"
	registerDevice(t, c, admin, id)
	dev := mustDial(t, h.MQTTAddr(), id)
	base := time.Now().Unix() - 7200
	if err := dev.publish(readingTopic(id), readingAt(id, 0, base), false); err != nil {
		t.Fatal(err)
	}
	if status, _ := readiness(t, c); status != 200 {
		t.Fatalf("ready before the disk filled: %d", status)
	}

	unfill := fillStore(t, h)
	big := map[string]any{"note": strings.Repeat("x", 12<<10)} // needs pages of its own
	r := c.do("POST", "/api/v1/esp/devices", admin, map[string]any{"device_id": "ESP_D4E5F6", "capabilities": big})
	if r.status != 503 || errCode(r) != "SERVICE_UNAVAILABLE" {
		t.Fatalf("registration with a full database answered %d %s", r.status, errCode(r))
	}
	if status, checks := readiness(t, c); status != 503 || checks["disk_space"] != false {
		t.Fatalf("readiness with a full database: %d %v", status, checks)
	}
	var acked []int64
	refused := false
	for i := 1; i <= 2000 && !refused; i++ {
		if err := dev.publish(readingTopic(id), readingAt(id, i, base+int64(i)), false); err != nil {
			refused = true
			break
		}
		acked = append(acked, base+int64(i))
	}
	if !refused {
		t.Fatal("a full database acknowledged 2000 readings")
	}
	t.Logf("%d readings acknowledged before the first that could not be stored", len(acked))
	if status, _ := readiness(t, c); status != 503 {
		t.Fatalf("readiness after a reading could not be stored: %d", status)
	}

	unfill()
	stored := storedTimes(t, h.Store, id)
	for _, ts := range acked {
		if !stored[ts] {
			t.Fatalf("reading %d acknowledged but not stored (%d acknowledged)", ts, len(acked))
		}
	}
	if r := c.do("POST", "/api/v1/esp/devices", admin, map[string]any{"device_id": "ESP_D4E5F6"}); r.status != 201 {
		t.Fatalf("registration once the database can grow: %d %s", r.status, r.raw)
	}
	if status, checks := readiness(t, c); status != 200 {
		t.Fatalf("readiness once a commit succeeded again: %d %v", status, checks)
	}
}

// Free space below the reserve makes the hub not ready.
func TestDiskBelowReserveIsNotReady(t *testing.T) {
	h, c := apiHub(t, Config{DiskReserve: 1 << 62})
	defer stopHub(t, h)
	if status, checks := readiness(t, c); status != 503 || checks["disk_space"] != false || checks["database"] != true {
		t.Fatalf("readiness below the disk reserve: %d %v", status, checks)
	}
}
