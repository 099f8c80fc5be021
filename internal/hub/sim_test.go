package hub

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sim"
	"github.com/kaiserhub/kaiser/internal/store"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runNode(
	t *testing.T, h *Hub, id string, q sim.Quirks, clock *sim.Clock, log *syncBuf,
) (*sim.Node, context.CancelFunc) {
	t.Helper()
	cfg := sim.NodeConfig{
		EspID:    id,
		Broker:   h.MQTTAddr(),
		Quirks:   q,
		Clock:    clock,
		Interval: 5 * time.Second,
		Sensors: []sim.SensorSpec{{
			GPIO:    34,
			Type:    "ph",
			Base:    2048,
			Pattern: "random",
			Range:   20,
		}},
	}
	if log != nil {
		cfg.BootLog = log
	}
	n := sim.NewNode(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-n.Stopped() })
	return n, cancel
}

// Issue 5's end-to-end walk with a baseline-firmware node: registration →
// pending → approval → readings → killed → offline (lwt) → back → online;
// then silent with the connection kept → offline (heartbeat_timeout).
func TestSimulatedNodeLifecycle(t *testing.T) {
	h := startHub(t, Config{HeartbeatTimeout: 1500 * time.Millisecond})
	defer stopHub(t, h)
	events := h.Events.Subscribe(1024)
	defer h.Events.Unsubscribe(events)
	clock := sim.NewClock(60) // one simulated minute per second
	q, _ := sim.ParseQuirks("default")
	log := &syncBuf{}
	n, _ := runNode(t, h, "ESP_5A11E0", q, clock, log)

	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusPending, "discovered"))
	if _, err := h.Devices.Approve(context.Background(), "ESP_5A11E0", "tester", ""); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusOnline, "heartbeat"))
	awaitEvent(t, events, 5*time.Second, func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == "ESP_5A11E0"
	})
	if d, _ := h.Devices.Get("ESP_5A11E0"); d.KaiserID != "" {
		t.Fatalf("baseline node publishes on kaiser//: root %q", d.KaiserID)
	}
	for _, banner := range []string{
		"Phase 1: Core Infrastructure READY  ║",
		"Phase 2: Communication Layer READY  ║",
		"Phase 3: Hardware Abstraction READY  ║",
		"Phase 4: Sensor System READY         ║",
		"Phase 5: Actuator System READY      ║",
	} {
		if !strings.Contains(log.String(), "║   "+banner) {
			t.Fatalf("boot log lacks %q", banner)
		}
	}

	n.Kill()
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusOffline, "lwt"))

	// Back: a power-cycled node (new boot, subscribes again).
	n2, _ := runNode(t, h, "ESP_5A11E0", q, clock, nil)
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusOnline, "heartbeat"))

	n2.Pause() // main loop hung, TCP alive
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusOffline, "heartbeat_timeout"))
	n2.Resume()
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_5A11E0", device.StatusOnline, "heartbeat"))
}

// A node with every quirk on (retain, no-resubscribe, late first heartbeat,
// empty kaiser id, no NTP) is registered and its readings stored, timed by
// the hub because ts is 0.
func TestSimulatedNodeAllQuirks(t *testing.T) {
	h := startHub(t, Config{})
	defer stopHub(t, h)
	events := h.Events.Subscribe(1024)
	defer h.Events.Unsubscribe(events)
	q, _ := sim.ParseQuirks("all")
	if !q.NTPZero || !q.Retain || !q.EmptyKaiserID || !q.LateFirstHeartbeat || !q.NoResubscribe {
		t.Fatalf("quirks %+v", q)
	}
	runNode(t, h, "ESP_A11000", q, sim.NewClock(60), nil)
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A11000", device.StatusPending, "discovered"))
	if _, err := h.Devices.Approve(context.Background(), "ESP_A11000", "tester", ""); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, 5*time.Second, statusIs("ESP_A11000", device.StatusOnline, ""))
	awaitEvent(t, events, 5*time.Second, func(e eventT) bool {
		d, ok := sensorData(e)
		return ok && d.EspID == "ESP_A11000"
	})
	waitIngestIdle(t, h)
	if err := h.Readings.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := h.Sensors.SeriesIDs("ESP_A11000", 34, "ph")
	rows, err := h.Store.QueryReadings(context.Background(), store.RawQuery{Series: ids, Limit: 10})
	if err != nil || len(rows) == 0 {
		t.Fatalf("readings: %d %v", len(rows), err)
	}
	if rows[0].TimeSource != "hub" || rows[0].Mode != "raw" {
		t.Fatalf("reading %+v", rows[0].Reading)
	}
	d, _ := h.Devices.Get("ESP_A11000")
	quirks, _ := d.Metadata["quirks_seen"].(map[string]any)
	if d.KaiserID != "" || quirks["ntp_unsynced"] != true || quirks["empty_kaiser_id"] != true {
		t.Fatalf("device %s quirks %v", d.KaiserID, quirks)
	}
	c := h.Ingest.DeviceCounters("ESP_A11000")
	if c.Dropped["handler_error"]+c.Dropped["bad_json"]+c.Dropped["wrong_type"] != 0 {
		t.Fatalf("errors: %+v", c)
	}
}
