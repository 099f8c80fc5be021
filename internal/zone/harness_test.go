package zone

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ Store = (*sqlite.Store)(nil)

// fakeStore keeps what the service commits, in memory.
type fakeStore struct {
	mu       sync.Mutex
	zones    map[string]store.Zone
	subzones map[string]store.Subzone // esp_id/subzone_id
	changes  []store.ZoneChange
	err      error // returned by every write when set
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{zones: map[string]store.Zone{}, subzones: map[string]store.Subzone{}}
}

func (f *fakeStore) LoadZones(context.Context) ([]store.Zone, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.zones)), nil
}

func (f *fakeStore) SaveZone(_ context.Context, z store.Zone) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.zones[z.ZoneID] = z
	return nil
}

func (f *fakeStore) DeleteZone(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.zones, id)
	return nil
}

func (f *fakeStore) LoadSubzones(context.Context) ([]store.Subzone, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.subzones)), nil
}

func (f *fakeStore) SaveSubzone(_ context.Context, sz store.Subzone) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	sz.GPIOs = slices.Clone(sz.GPIOs)
	f.subzones[sz.EspID+"/"+sz.SubzoneID] = sz
	return nil
}

func (f *fakeStore) DeleteSubzone(_ context.Context, espID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.subzones, espID+"/"+id)
	return nil
}

func (f *fakeStore) AppendZoneChange(_ context.Context, c store.ZoneChange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, c)
	return nil
}

func (f *fakeStore) subzone(espID, id string) (store.Subzone, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sz, ok := f.subzones[espID+"/"+id]
	return sz, ok
}

// fakeDevices is the registry as the zones use it: Update merges metadata
// like device.Update (a nil value deletes the key) and counts the saves.
type fakeDevices struct {
	mu      sync.Mutex
	devices map[string]device.Device
	updates int
}

var _ Devices = (*fakeDevices)(nil)

func (f *fakeDevices) add(d device.Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d.Metadata == nil {
		d.Metadata = map[string]any{}
	}
	f.devices[d.DeviceID] = d
}

func snapshot(d device.Device) device.Device {
	d.Metadata = maps.Clone(d.Metadata)
	d.RebootRequired, _ = d.Metadata["reboot_required"].(bool)
	return d
}

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return snapshot(d), nil
}

func (f *fakeDevices) List() []device.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []device.Device
	for _, id := range slices.Sorted(maps.Keys(f.devices)) {
		out = append(out, snapshot(f.devices[id]))
	}
	return out
}

func (f *fakeDevices) Update(_ context.Context, id string, p device.Patch) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return device.Device{}, device.ErrNotFound
	}
	d.Metadata = maps.Clone(d.Metadata)
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&d.ZoneID, p.ZoneID)
	set(&d.ZoneName, p.ZoneName)
	set(&d.MasterZoneID, p.MasterZoneID)
	for k, v := range p.Metadata {
		if v == nil {
			delete(d.Metadata, k)
		} else {
			d.Metadata[k] = v
		}
	}
	d.Version++
	f.devices[id] = d
	f.updates++
	return snapshot(d), nil
}

func (f *fakeDevices) Admit(m ingest.Message) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[m.Topic.EspID]
	if !ok {
		return d, ingest.Drop(contract.ReasonUnknownDevice, "device is not registered")
	}
	if !isApproved(d.Status) {
		return d, ingest.Drop(contract.ReasonNotApproved, "device is "+d.Status)
	}
	d.KaiserID = m.Topic.KaiserID
	f.devices[d.DeviceID] = d
	return snapshot(d), nil
}

func (f *fakeDevices) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devices[id]
	d.Status = status
	f.devices[id] = d
}

func (f *fakeDevices) setMeta(id string, kv map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devices[id]
	d.Metadata = maps.Clone(d.Metadata)
	maps.Copy(d.Metadata, kv)
	f.devices[id] = d
}

// published is one message the service sent.
type published struct {
	topic   string
	payload map[string]any
	raw     string
}

// fakeBus records publishes; onPublish runs before each one is recorded.
type fakeBus struct {
	mu        sync.Mutex
	msgs      []published
	err       error
	onPublish func(topic string)
}

func (b *fakeBus) Publish(_ context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if b.onPublish != nil {
		b.onPublish(topic)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if qos != 1 || retain {
		panic("zone messages go out at QoS 1, not retained (docs/protocol.md M2)")
	}
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	b.msgs = append(b.msgs, published{topic: topic, payload: m, raw: string(payload)})
	return nil
}

// sent returns the messages whose topic ends in /suffix.
func (b *fakeBus) sent(suffix string) []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []published
	for _, m := range b.msgs {
		if strings.HasSuffix(m.topic, "/"+suffix) {
			out = append(out, m)
		}
	}
	return out
}

func (b *fakeBus) topics() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.msgs {
		out = append(out, m.topic)
	}
	return out
}

func (b *fakeBus) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = nil
}

type fakeAlerts struct {
	mu      sync.Mutex
	raised  []notify.Spec
	cleared []string
}

func (a *fakeAlerts) Raise(_ context.Context, spec notify.Spec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.raised = append(a.raised, spec)
	return nil
}

func (a *fakeAlerts) Clear(_ context.Context, key string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cleared = append(a.cleared, key)
	return nil
}

func (a *fakeAlerts) keys() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, s := range a.raised {
		out = append(out, s.Key)
	}
	return out
}

type harness struct {
	t       *testing.T
	svc     *Service
	store   *fakeStore
	devices *fakeDevices
	bus     *fakeBus
	alerts  *fakeAlerts
	events  *event.Bus
	sub     *event.Subscription
}

const testID = "ESP_A1B2C3"

var errBroker = errors.New("broker down")

// newHarness builds a loaded service with one approved, online device
// (testID, baseline firmware, recorded root god).
func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		store:   newFakeStore(),
		devices: &fakeDevices{devices: map[string]device.Device{}},
		bus:     &fakeBus{},
		alerts:  &fakeAlerts{},
		events:  event.NewBus(),
	}
	h.sub = h.events.Subscribe(1024, event.TypeZoneAssignment, event.TypeSubzoneAssignment)
	h.addDevice(testID, device.StatusOnline, "god")
	h.load()
	t.Cleanup(func() { h.svc.Stop() })
	return h
}

// load (re)builds the service over the harness's store and devices.
func (h *harness) load() {
	h.t.Helper()
	h.svc = New(Config{
		SensorPins:   func(string) []int { return []int{34, 4} },
		ActuatorPins: func(string) []int { return []int{5} },
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, h.store, h.devices, h.bus, h.events, h.alerts)
	if err := h.svc.Load(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) addDevice(id, status, kaiser string) {
	d := device.Device{}
	d.DeviceID, d.Status, d.KaiserID = id, status, kaiser
	d.Metadata = map[string]any{"firmware_generation": "baseline"}
	h.devices.add(d)
}

func (h *harness) device(id string) device.Device {
	h.t.Helper()
	d, err := h.devices.Get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// ack delivers a live device message on the recorded root of the device.
func (h *harness) ack(kaiser, suffix, payload string) error {
	h.t.Helper()
	tp, err := contract.ParseTopic("kaiser/" + kaiser + "/esp/" + testID + "/" + suffix)
	if err != nil {
		h.t.Fatal(err)
	}
	m := ingest.Message{Topic: tp, Payload: []byte(payload), ReceivedAt: time.Now()}
	switch tp.Kind {
	case contract.KindZoneAck:
		return h.svc.HandleZoneAck(context.Background(), m)
	case contract.KindSubzoneAck:
		return h.svc.HandleSubzoneAck(context.Background(), m)
	}
	h.t.Fatalf("not an ack topic: %s", suffix)
	return nil
}

func (h *harness) mustAck(kaiser, suffix, payload string) {
	h.t.Helper()
	if err := h.ack(kaiser, suffix, payload); err != nil {
		h.t.Fatal(err)
	}
}

// emitted returns the zone and subzone events published so far.
func (h *harness) emitted() []event.Payload {
	var out []event.Payload
	for {
		select {
		case e := <-h.sub.C:
			out = append(out, e.Data)
		default:
			return out
		}
	}
}

// assign makes a transfer assignment of testID to zone and fails on error.
func (h *harness) assign(zone string) AssignResult {
	h.t.Helper()
	res, err := h.svc.Assign(context.Background(), testID, Assignment{ZoneID: zone, Actor: "op"})
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// assignedZone assigns zone and confirms it with the device's ack.
func (h *harness) assignedZone(zone string) {
	h.t.Helper()
	h.assign(zone)
	h.mustAck("god", "zone/ack", `{"status":"zone_assigned","zone_id":"`+zone+`","master_zone_id":"","ts":0}`)
}

func (h *harness) subzone(id string, gpios ...int) (SubzoneResult, error) {
	return h.svc.AssignSubzone(context.Background(), testID, SubzoneRequest{SubzoneID: id, Name: id, GPIOs: gpios})
}

func (h *harness) mustSubzone(id string, gpios ...int) {
	h.t.Helper()
	if _, err := h.subzone(id, gpios...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) subzoneStatus(id string) string {
	h.t.Helper()
	info, err := h.svc.Subzone(testID, id)
	if err != nil {
		return "absent"
	}
	return info.Status
}

func contractTopic(t *testing.T, kaiser, espID, suffix string) contract.Topic {
	t.Helper()
	tp, err := contract.ParseTopic("kaiser/" + kaiser + "/esp/" + espID + "/" + suffix)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func subzoneRecord(espID, id string, gpios ...int) store.Subzone {
	now := time.Now()
	return store.Subzone{
		EspID:     espID,
		SubzoneID: id,
		GPIOs:     gpios,
		Status:    SubzonePending,
		CreatedAt: now,
		UpdatedAt: now,
	}
}
