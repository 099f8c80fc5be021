package device

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// TestMain stops the PostgreSQL server of the refresh tests after the
// tests, then looks for leaked goroutines.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fakeStore keeps what the service persists, in memory. Like the real
// store it keeps a device's record only from a save of a newer version.
type fakeStore struct {
	mu          sync.Mutex
	loaded      []store.Device
	saved       map[string]store.Device
	transitions []store.Transition
	heartbeats  []store.Heartbeat
	flushes     int
	committed   map[string]store.Device // saved as of the last Flush, or by a tracked save
	saveErr     error
	// commitErr fails the commit of a save whose caller waits for it
	// (store.Commits on its context), as a full disk does.
	commitErr error

	// beforeSave, when set, runs before each SaveDevice outside the lock:
	// a test holds a save there to deliver saves out of order.
	beforeSave func(d store.Device)

	pushDocs    map[string][]byte // returned by LoadConfigPushes
	pushStatus  map[string]string // last saved push status per device
	pushSavings int
}

var (
	_ store.Devices = (*fakeStore)(nil)
	_ PushStore     = (*fakeStore)(nil)
)

func newFakeStore() *fakeStore {
	return &fakeStore{
		saved:      map[string]store.Device{},
		pushDocs:   map[string][]byte{},
		pushStatus: map[string]string{},
	}
}

func (f *fakeStore) LoadDevices(context.Context) ([]store.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.loaded), nil
}

func (f *fakeStore) SaveDevice(ctx context.Context, d store.Device) error {
	if f.beforeSave != nil {
		f.beforeSave(d)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saveErr != nil {
		return f.saveErr
	}
	if c := store.CommitsFrom(ctx); c != nil {
		// A save whose caller waits for it commits at once, or fails.
		report := c.Track()
		defer report(f.commitErr)
		if f.commitErr != nil {
			return nil
		}
		if f.committed == nil {
			f.committed = map[string]store.Device{}
		}
		if old, ok := f.committed[d.DeviceID]; !ok || d.Version > old.Version {
			f.committed[d.DeviceID] = d
		}
	}
	if old, ok := f.saved[d.DeviceID]; ok && d.Version <= old.Version {
		return nil
	}
	f.saved[d.DeviceID] = d
	return nil
}

func (f *fakeStore) AppendTransition(ctx context.Context, t store.Transition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := store.CommitsFrom(ctx); c != nil {
		defer c.Track()(f.commitErr)
	}
	f.transitions = append(f.transitions, t)
	return nil
}

func (f *fakeStore) SaveDeviceChange(ctx context.Context, d store.Device, t store.Transition) error {
	if err := f.SaveDevice(ctx, d); err != nil {
		return err
	}
	return f.AppendTransition(ctx, t)
}

func (f *fakeStore) AppendHeartbeat(_ context.Context, h store.Heartbeat) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats = append(f.heartbeats, h)
	return nil
}

func (f *fakeStore) PurgeDevice(_ context.Context, id string, version int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.saved[id]; !ok || d.Version > version {
		return nil
	}
	delete(f.saved, id)
	delete(f.committed, id)
	f.transitions = slices.DeleteFunc(f.transitions, func(t store.Transition) bool { return t.DeviceID == id })
	f.heartbeats = slices.DeleteFunc(f.heartbeats, func(h store.Heartbeat) bool { return h.DeviceID == id })
	return nil
}

func (f *fakeStore) Flush(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	f.committed = maps.Clone(f.saved)
	return nil
}

func (f *fakeStore) SaveConfigPush(_ context.Context, espID, _, status string, doc []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushDocs[espID] = doc
	f.pushStatus[espID] = status
	f.pushSavings++
	return nil
}

func (f *fakeStore) LoadConfigPushes(context.Context) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.pushDocs), nil
}

func (f *fakeStore) savedPushStatus(espID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pushStatus[espID]
}

// fakeBus records what the service publishes to devices.
type fakeBus struct {
	mu   sync.Mutex
	sent []sent
	err  error
	// answer, if set, runs after each publish, before Publish returns: a
	// device that answers faster than the publisher goes on.
	answer func(topic string)
}

type sent struct {
	topic   string
	payload []byte
}

var _ Publisher = (*fakeBus)(nil)

func (b *fakeBus) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return b.err
	}
	b.sent = append(b.sent, sent{topic: topic, payload: slices.Clone(payload)})
	answer := b.answer
	b.mu.Unlock()
	if answer != nil {
		answer(topic)
	}
	return nil
}

// take returns and forgets the publications to topics ending in suffix.
func (b *fakeBus) take(suffix string) []sent {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out, rest []sent
	for _, s := range b.sent {
		if len(s.topic) >= len(suffix) && s.topic[len(s.topic)-len(suffix):] == suffix {
			out = append(out, s)
		} else {
			rest = append(rest, s)
		}
	}
	b.sent = rest
	return out
}

// fakeSource is the hub's configuration of each device.
type fakeSource struct {
	mu        sync.Mutex
	items     map[string][]contract.SensorConfigItem
	actuators map[string][]contract.ActuatorConfigItem
	// travel is what CloseValves answers; closed counts its calls.
	travel time.Duration
	closed int
}

var _ ConfigSource = (*fakeSource)(nil)

func (f *fakeSource) SensorItems(espID string) []contract.SensorConfigItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.items[espID])
}

func (f *fakeSource) ActuatorItems(espID string) []contract.ActuatorConfigItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.actuators[espID])
}

func (f *fakeSource) CloseValves(context.Context, string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return f.travel
}

func (f *fakeSource) setActuators(espID string, items ...contract.ActuatorConfigItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actuators[espID] = items
}

func (f *fakeSource) set(espID string, items ...contract.SensorConfigItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[espID] = items
}

// harness is one service with fakes around it.
type harness struct {
	t      testing.TB
	svc    *Service
	store  *fakeStore
	bus    *fakeBus
	source *fakeSource
	sub    *event.Subscription
	// stopping is what Config.Stopping reports unless a test sets its own.
	stopping atomic.Bool
}

const testID = "ESP_T1"

// newHarness builds a loaded service with config push enabled.
func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, newFakeStore())
}

func newHarnessWith(t testing.TB, cfg Config, st *fakeStore) *harness {
	t.Helper()
	events := event.NewBus()
	h := &harness{
		t:     t,
		store: st,
		bus:   &fakeBus{},
		source: &fakeSource{
			items:     map[string][]contract.SensorConfigItem{},
			actuators: map[string][]contract.ActuatorConfigItem{},
		},
		sub: events.Subscribe(1024),
	}
	if cfg.Stopping == nil {
		cfg.Stopping = h.stopping.Load
	}
	h.svc = New(cfg, h.store, h.bus, events, slog.New(slog.NewTextHandler(io.Discard, nil)))

	ctx := context.Background()
	if err := h.svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.EnablePush(ctx, h.source, h.store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.svc.StopPush)
	return h
}

func topic(t testing.TB, kaiser, id, suffix string) contract.Topic {
	t.Helper()
	tp, err := contract.ParseTopic("kaiser/" + kaiser + "/esp/" + id + "/" + suffix)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func (h *harness) message(id, suffix string, payload map[string]any) ingest.Message {
	h.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		h.t.Fatal(err)
	}
	return ingest.Message{
		Topic:      topic(h.t, "god", id, suffix),
		Payload:    b,
		ReceivedAt: time.Now(),
	}
}

// heartbeat is a valid baseline heartbeat of id with the given uptime.
func (h *harness) heartbeat(id string, uptime int64) ingest.Message {
	return h.message(id, "system/heartbeat", map[string]any{
		"esp_id":    id,
		"ts":        0,
		"uptime":    uptime,
		"heap_free": 120000,
		"wifi_rssi": -60,
	})
}

func (h *harness) will(id string) ingest.Message {
	return h.message(id, "system/will", map[string]any{
		"status": "offline",
		"reason": "unexpected_disconnect",
	})
}

// beat sends a heartbeat of testID and fails the test on an error.
func (h *harness) beat(uptime int64) {
	h.t.Helper()
	if err := h.svc.HandleHeartbeat(context.Background(), h.heartbeat(testID, uptime)); err != nil {
		h.t.Fatalf("heartbeat: %v", err)
	}
}

// online brings testID from unknown to online: discovered, approved, heartbeat.
func (h *harness) online() {
	h.t.Helper()
	h.beat(10)
	if _, err := h.svc.Approve(context.Background(), testID, "admin", ""); err != nil {
		h.t.Fatal(err)
	}
	h.beat(20)
	h.mustStatus(testID, StatusOnline)
}

func (h *harness) mustStatus(id, want string) {
	h.t.Helper()
	d, err := h.svc.Get(id)
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	if d.Status != want {
		h.t.Fatalf("status of %s = %s, want %s", id, d.Status, want)
	}
}

// acks returns the statuses of the heartbeat acks published since the last call.
func (h *harness) acks() []contract.HeartbeatAck {
	h.t.Helper()
	var out []contract.HeartbeatAck
	for _, s := range h.bus.take("system/heartbeat/ack") {
		var a contract.HeartbeatAck
		if err := json.Unmarshal(s.payload, &a); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// configs returns the config messages published since the last call.
func (h *harness) configs() []contract.Config {
	h.t.Helper()
	var out []contract.Config
	for _, s := range h.bus.take("/config") {
		var c contract.Config
		if err := json.Unmarshal(s.payload, &c); err != nil {
			h.t.Fatal(err)
		}
		if !contract.FitsPacket(s.topic, s.payload, contract.MaxDevicePacket) {
			h.t.Errorf("config part of %d bytes does not fit the default packet limit", len(s.payload))
		}
		out = append(out, c)
	}
	return out
}

// events returns the events published since the last call.
func (h *harness) events() []event.Event {
	var out []event.Event
	for {
		select {
		case e := <-h.sub.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

// ofType filters events by type.
func ofType(evs []event.Event, typ string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if string(e.Type()) == typ {
			out = append(out, e)
		}
	}
	return out
}

// dataOf is the one place that reads an event's payload: it goes through
// the JSON the WebSocket feed sends, so it holds for map and typed payloads.
func dataOf(e event.Event) map[string]any {
	b, err := json.Marshal(e.Data)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// statusOf reads a device_status event.
func statusOf(e event.Event) (id, status, prev, reason string) {
	d := dataOf(e)
	str := func(k string) string {
		s, _ := d[k].(string)
		return s
	}
	return str("esp_id"), str("status"), str("previous_status"), str("reason")
}

// changes renders the device_status events as "prev→status (reason)".
func changes(evs []event.Event) []string {
	var out []string
	for _, e := range ofType(evs, "device_status") {
		_, status, prev, reason := statusOf(e)
		out = append(out, prev+"→"+status+" ("+reason+")")
	}
	return out
}

// dropReason is the drop reason of err, or "" if err is no drop.
func dropReason(err error) string {
	var d *ingest.DropError
	if errors.As(err, &d) {
		return d.Reason
	}
	return ""
}
