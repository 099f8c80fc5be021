package sensor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// memStore keeps configs and series in memory. The history and retention
// methods are not implemented: a test reaching them panics on the nil
// embedded Store (those paths are tested on SQLite in store_test.go).
type memStore struct {
	Store

	mu      sync.Mutex
	docs    map[string]store.Doc
	series  map[store.SeriesKey]int64
	saveErr error
}

func newMemStore() *memStore {
	return &memStore{
		docs:   map[string]store.Doc{},
		series: map[store.SeriesKey]int64{},
	}
}

func (m *memStore) SaveSensorConfig(_ context.Context, d store.Doc) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saveErr != nil {
		return m.saveErr
	}
	m.docs[d.ID] = d
	return nil
}

func (m *memStore) DeleteSensorConfig(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.docs, id)
	return nil
}

func (m *memStore) LoadSensorConfigs(context.Context) ([]store.Doc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Doc
	for _, d := range m.docs {
		out = append(out, d)
	}
	return out, nil
}

func (m *memStore) EnsureSeries(_ context.Context, k store.SeriesKey) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.series[k]; ok {
		return id, nil
	}
	id := int64(len(m.series) + 1)
	m.series[k] = id
	return id, nil
}

func (m *memStore) LoadSeries(context.Context) (map[store.SeriesKey]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[store.SeriesKey]int64, len(m.series))
	for k, id := range m.series {
		out[k] = id
	}
	return out, nil
}

func (m *memStore) LatestReadings(context.Context) ([]store.RawRow, error) { return nil, nil }

// memSink records the readings handed to storage.
type memSink struct {
	readings []store.Reading
	err      error
}

func (m *memSink) Add(_ context.Context, r store.Reading) error {
	if m.err != nil {
		return m.err
	}
	m.readings = append(m.readings, r)
	return nil
}

func (m *memSink) last(t *testing.T) store.Reading {
	t.Helper()
	if len(m.readings) == 0 {
		t.Fatal("no reading stored")
	}
	return m.readings[len(m.readings)-1]
}

// published is one message the service sent to a device.
type published struct {
	topic   string
	payload string
}

type memPublisher struct{ sent []published }

func (m *memPublisher) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	m.sent = append(m.sent, published{topic: topic, payload: string(payload)})
	return nil
}

// memDevices is the registry: a device not listed is unknown, and only
// approved or online devices are admitted.
type memDevices struct{ byID map[string]device.Device }

func (m *memDevices) Get(espID string) (device.Device, error) {
	d, ok := m.byID[espID]
	if !ok {
		return device.Device{}, device.ErrNotFound
	}
	return d, nil
}

func (m *memDevices) AdmitType(msg ingest.Message) (string, error) {
	d, err := m.Get(msg.Topic.EspID)
	if err != nil {
		return "", ingest.Drop(contract.ReasonUnknownDevice, "unknown device")
	}
	if d.Status != device.StatusApproved && d.Status != device.StatusOnline {
		return "", ingest.Drop(contract.ReasonNotApproved, "not approved")
	}
	return d.HardwareType, nil
}

// memAlerts records raised specs and cleared keys; tests read them once
// the calls are over.
type memAlerts struct {
	mu      sync.Mutex
	raised  []notify.Spec
	cleared []string
}

func (m *memAlerts) Raise(_ context.Context, spec notify.Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.raised = append(m.raised, spec)
	return nil
}

func (m *memAlerts) Clear(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleared = append(m.cleared, key)
	return nil
}

var (
	_ Store     = (*memStore)(nil)
	_ Sink      = (*memSink)(nil)
	_ Publisher = (*memPublisher)(nil)
	_ Devices   = (*memDevices)(nil)
	_ Alerts    = (*memAlerts)(nil)
)

// t0 is the fixture's start time, a plausible device clock (docs/protocol.md §5.3).
var t0 = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// fixture is a sensor service on in-memory fakes with a clock the test
// moves by hand.
type fixture struct {
	svc     *Service
	store   *memStore
	sink    *memSink
	pub     *memPublisher
	devices *memDevices
	alerts  *memAlerts
	bus     *event.Bus
	now     time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		store:   newMemStore(),
		sink:    &memSink{},
		pub:     &memPublisher{},
		devices: &memDevices{byID: map[string]device.Device{}},
		alerts:  &memAlerts{},
		bus:     event.NewBus(),
		now:     t0,
	}
	f.svc = New(f.store, f.sink, f.devices, f.pub, f.bus, f.alerts, Options{
		ProcessedEcho: true,
		Logger:        slog.New(slog.DiscardHandler),
	})
	f.svc.now = func() time.Time { return f.now }
	return f
}

// addDevice registers a device with a status and hardware type.
func (f *fixture) addDevice(espID, status, hw string) {
	d := device.Device{}
	d.DeviceID, d.Status, d.HardwareType = espID, status, hw
	f.devices.byID[espID] = d
}

// configure upserts a config and fails the test on an error.
func (f *fixture) configure(t *testing.T, c Config) Config {
	t.Helper()
	out, _, err := f.svc.Upsert(context.Background(), c)
	if err != nil {
		t.Fatalf("upsert %s on %d: %v", c.SensorType, c.GPIO, err)
	}
	return out
}

// send hands a reading to HandleData as received now.
func (f *fixture) send(espID string, gpio int, payload map[string]any) error {
	return f.deliver(espID, gpio, payload, false)
}

func (f *fixture) deliver(espID string, gpio int, payload map[string]any, replay bool) error {
	topic := fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", espID, gpio)
	tp, err := contract.ParseTopic(topic)
	if err != nil {
		return err
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return f.svc.HandleData(context.Background(), ingest.Message{
		Topic:      tp,
		RawTopic:   topic,
		Payload:    b,
		Replay:     replay,
		ReceivedAt: f.now,
	})
}

// subscribe returns a function that drains the events of one type
// published so far; publishing is synchronous, so no waiting is needed.
func (f *fixture) subscribe(t *testing.T, typ string) func() []event.Event {
	t.Helper()
	sub := f.bus.Subscribe(64)
	t.Cleanup(func() { f.bus.Unsubscribe(sub) })
	return func() []event.Event {
		var out []event.Event
		for {
			select {
			case e := <-sub.C:
				if string(e.Type()) == typ {
					out = append(out, e)
				}
			default:
				return out
			}
		}
	}
}

// reading is a sensor payload stamped with the device time at.
func reading(sensorType string, raw float64, at time.Time, extra ...any) map[string]any {
	p := map[string]any{
		"sensor_type": sensorType,
		"raw":         raw,
		"ts":          at.Unix(),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i].(string)] = extra[i+1]
	}
	return p
}

// dropReason is the drop label of an ingest error, or "" for none.
func dropReason(err error) string {
	var drop *ingest.DropError
	if errors.As(err, &drop) {
		return drop.Reason
	}
	var dec *contract.DecodeError
	if errors.As(err, &dec) {
		return dec.Reason
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
