package emergency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// journal records, in order, what the fakes were asked to do, so tests can
// assert the order of commits, OFFs and publishes across them.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
	j.mu.Unlock()
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// index is the position of the first entry with prefix, or -1.
func (j *journal) index(prefix string) int {
	for i, e := range j.all() {
		if strings.HasPrefix(e, prefix) {
			return i
		}
	}
	return -1
}

func (j *journal) count(prefix string) int {
	n := 0
	for _, e := range j.all() {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

// fakeActuators is the actuator part: configured outputs, OFFs recorded.
type fakeActuators struct {
	j        *journal
	mu       sync.Mutex
	outputs  map[string][]actuator.Output
	latched  map[string][]int
	offs     []actuator.OffRequest
	expired  []string
	cleared  []string
	fences   []string
	offError error
}

func (a *fakeActuators) Outputs(espID string) []actuator.Output {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.outputs[espID])
}

func (a *fakeActuators) Off(_ context.Context, r actuator.OffRequest) (actuator.Result, error) {
	a.mu.Lock()
	a.offs = append(a.offs, r)
	err := a.offError
	a.mu.Unlock()
	a.j.add("off %s/%d", r.EspID, r.GPIO)
	if err != nil {
		return actuator.Result{Status: "failed"}, err
	}
	return actuator.Result{CommandID: "c", CorrelationID: "c", Status: "sent", Published: true}, nil
}

func (a *fakeActuators) ClearDeviceLatches(_ context.Context, espID string) {
	a.mu.Lock()
	a.cleared = append(a.cleared, espID)
	a.latched[espID] = nil
	a.mu.Unlock()
}

func (a *fakeActuators) ExpireQueued(_ context.Context, espID, reason string) {
	a.mu.Lock()
	a.expired = append(a.expired, espID+":"+reason)
	a.mu.Unlock()
}

func (a *fakeActuators) Fence(espID string, fn func()) {
	a.mu.Lock()
	a.fences = append(a.fences, espID)
	a.mu.Unlock()
	a.j.add("fence %s", espID)
	fn()
}

func (a *fakeActuators) DeviceLatched(espID string) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.latched[espID])
}

func (a *fakeActuators) offsFor(espID string) []actuator.OffRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []actuator.OffRequest
	for _, o := range a.offs {
		if o.EspID == espID {
			out = append(out, o)
		}
	}
	return out
}

// fakeDevices is the device registry.
type fakeDevices struct {
	j       *journal
	mu      sync.Mutex
	devices map[string]device.Device
	// push is what PushConfig does after recording the call; nil answers "cfg-1".
	push func(espID, trigger string) (string, error)
}

func (d *fakeDevices) Get(espID string) (device.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, ok := d.devices[espID]
	if !ok {
		return device.Device{}, device.ErrNotFound
	}
	return dev, nil
}

func (d *fakeDevices) List() []device.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := slices.Sorted(maps.Keys(d.devices))
	out := make([]device.Device, 0, len(ids))
	for _, id := range ids {
		out = append(out, d.devices[id])
	}
	return out
}

func (d *fakeDevices) Admit(m ingest.Message) (device.Device, error) {
	dev, err := d.Get(m.Topic.EspID)
	if err != nil {
		return dev, ingest.Drop(contract.ReasonUnknownDevice, "device is not registered")
	}
	if !approved(dev.Status) {
		return dev, ingest.Drop(contract.ReasonNotApproved, "device is "+dev.Status)
	}
	return dev, nil
}

func (d *fakeDevices) PushConfig(_ context.Context, espID, trigger string) (string, error) {
	d.j.add("push %s %s", espID, trigger)
	if d.push != nil {
		return d.push(espID, trigger)
	}
	return "cfg-1", nil
}

func (d *fakeDevices) set(dev device.Device) {
	d.mu.Lock()
	d.devices[dev.DeviceID] = dev
	d.mu.Unlock()
}

func (d *fakeDevices) setStatus(espID, status string) {
	d.mu.Lock()
	dev := d.devices[espID]
	dev.Status = status
	d.devices[espID] = dev
	d.mu.Unlock()
}

// published is one message the hub published.
type published struct {
	topic   string
	payload map[string]any
}

// fakeBroker records publishes; answer lets a test play the device.
type fakeBroker struct {
	j         *journal
	mu        sync.Mutex
	msgs      []published
	down      bool
	failTopic string
	answer    func(p published)
}

func (b *fakeBroker) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	b.mu.Lock()
	fail := b.down || (b.failTopic != "" && strings.Contains(topic, b.failTopic))
	b.mu.Unlock()
	if fail {
		b.j.add("publish-failed %s", topic)
		return errors.New("broker down")
	}

	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return err
	}
	p := published{topic: topic, payload: m}
	b.mu.Lock()
	b.msgs = append(b.msgs, p)
	answer := b.answer
	b.mu.Unlock()
	b.j.add("publish %s %v", topic, m["command"])
	if answer != nil {
		answer(p)
	}
	return nil
}

func (b *fakeBroker) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.down
}

func (b *fakeBroker) on(topicSuffix string) []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []published
	for _, m := range b.msgs {
		if strings.HasSuffix(m.topic, topicSuffix) {
			out = append(out, m)
		}
	}
	return out
}

// fakeStore keeps latches and tokens in memory; failures makes that many
// latch saves fail.
type fakeStore struct {
	j        *journal
	mu       sync.Mutex
	latches  map[string]store.EmergencyLatch
	tokens   map[string]store.EmergencyToken
	failures int
	saves    int
}

func newFakeStore(j *journal) *fakeStore {
	return &fakeStore{j: j, latches: map[string]store.EmergencyLatch{}, tokens: map[string]store.EmergencyToken{}}
}

func (f *fakeStore) SaveLatches(_ context.Context, ls []store.EmergencyLatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saves++
	if f.failures > 0 {
		f.failures--
		f.j.add("commit-failed")
		return errors.New("disk full")
	}
	for _, l := range ls {
		if cur, ok := f.latches[l.Scope]; ok && cur.Version >= l.Version {
			continue
		}
		l.ClearAttempts = slices.Clone(l.ClearAttempts)
		f.latches[l.Scope] = l
	}
	f.j.add("commit")
	return nil
}

func (f *fakeStore) LoadLatches(context.Context) ([]store.EmergencyLatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.latches)), nil
}

func (f *fakeStore) SaveEmergencyToken(_ context.Context, t store.EmergencyToken) error {
	f.mu.Lock()
	f.tokens[t.Scope] = t
	f.mu.Unlock()
	f.j.add("token-commit %s", t.Scope)
	return nil
}

func (f *fakeStore) LoadEmergencyTokens(context.Context) ([]store.EmergencyToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.tokens)), nil
}

func (f *fakeStore) latch(scope string) (store.EmergencyLatch, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.latches[scope]
	return l, ok
}

func (f *fakeStore) fail(n int) {
	f.mu.Lock()
	f.failures = n
	f.mu.Unlock()
}

type fakeAudit struct {
	mu      sync.Mutex
	entries []store.AuditEntry
}

func (a *fakeAudit) Record(_ context.Context, e store.AuditEntry) {
	a.mu.Lock()
	a.entries = append(a.entries, e)
	a.mu.Unlock()
}

func (a *fakeAudit) of(eventType string) []store.AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []store.AuditEntry
	for _, e := range a.entries {
		if e.EventType == eventType {
			out = append(out, e)
		}
	}
	return out
}

type fakeAlerts struct {
	mu      sync.Mutex
	raised  []notify.Spec
	cleared []string
}

func (a *fakeAlerts) Raise(_ context.Context, s notify.Spec) error {
	a.mu.Lock()
	a.raised = append(a.raised, s)
	a.mu.Unlock()
	return nil
}

func (a *fakeAlerts) Clear(_ context.Context, key string) error {
	a.mu.Lock()
	a.cleared = append(a.cleared, key)
	a.mu.Unlock()
	return nil
}

func (a *fakeAlerts) raisedKey(prefix string) (notify.Spec, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.raised {
		if strings.HasPrefix(s.Key, prefix) {
			return s, true
		}
	}
	return notify.Spec{}, false
}

func (a *fakeAlerts) wasCleared(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.cleared, key)
}

// rig is a loaded service over fakes.
type rig struct {
	t       *testing.T
	j       *journal
	acts    *fakeActuators
	devices *fakeDevices
	broker  *fakeBroker
	store   *fakeStore
	audit   *fakeAudit
	alerts  *fakeAlerts
	events  *event.Bus
	feed    *event.Subscription
	svc     *Service
	// second is the service's Deps.Second; zero is a real second.
	second time.Duration
}

// Device ids of the rigs.
const (
	espA = "ESP_AAAAAA"
	espB = "ESP_BBBBBB"
)

func newRig(t *testing.T) *rig {
	t.Helper()
	j := &journal{}
	r := &rig{
		t:       t,
		j:       j,
		acts:    &fakeActuators{j: j, outputs: map[string][]actuator.Output{}, latched: map[string][]int{}},
		devices: &fakeDevices{j: j, devices: map[string]device.Device{}},
		broker:  &fakeBroker{j: j},
		store:   newFakeStore(j),
		audit:   &fakeAudit{},
		alerts:  &fakeAlerts{},
		events:  event.NewBus(),
	}
	r.feed = r.events.Subscribe(1024, event.TypeEmergency, event.TypeActuatorAlert)
	r.start()
	return r
}

// start builds and loads a service over the rig's fakes (again after a
// restart, with the same store).
func (r *rig) start() {
	r.t.Helper()
	r.svc = New(Deps{
		Actuators: r.acts,
		Devices:   r.devices,
		Broker:    r.broker,
		Store:     r.store,
		Audit:     r.audit,
		Alerts:    r.alerts,
		Events:    r.events,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Second:    r.second,
	})
	if err := r.svc.Load(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(r.svc.Close)
}

// device adds an online approved device with outputs.
func (r *rig) device(id string, outputs ...actuator.Output) {
	r.devices.set(device.Device{Device: store.Device{
		DeviceID: id,
		Status:   device.StatusOnline,
		KaiserID: "god",
		ZoneID:   "zone_1",
		Metadata: map[string]any{"firmware_generation": "baseline"},
	}})
	for i := range outputs {
		outputs[i].EspID = id
	}
	r.acts.mu.Lock()
	r.acts.outputs[id] = outputs
	r.acts.mu.Unlock()
}

func pump(gpio int) actuator.Output  { return actuator.Output{GPIO: gpio, Type: "pump"} }
func relay(gpio int) actuator.Output { return actuator.Output{GPIO: gpio, Type: "relay"} }
func valve(gpio int, travel time.Duration) actuator.Output {
	return actuator.Output{GPIO: gpio, Type: "valve", ValveTravel: travel}
}

func (r *rig) stop(espID string, gpio *int) StopResult {
	r.t.Helper()
	res, err := r.svc.Stop(context.Background(), StopRequest{
		EspID:  espID,
		GPIO:   gpio,
		Reason: "flooding",
		Actor:  Actor{User: "olga", RequestID: "req-1"},
	})
	if err != nil {
		r.t.Fatalf("stop: %v", err)
	}
	return res
}

func (r *rig) clear(req ClearRequest) ClearResult {
	r.t.Helper()
	if req.Reason == "" {
		req.Reason = "fixed"
	}
	req.Actor = Actor{User: "olga"}
	res, err := r.svc.Clear(context.Background(), req)
	if err != nil {
		r.t.Fatalf("clear: %v", err)
	}
	return res
}

// message is a live device message on suffix.
func message(t *testing.T, espID, suffix, payload string) ingest.Message {
	t.Helper()
	tp, err := contract.ParseTopic("kaiser/god/esp/" + espID + "/" + suffix)
	if err != nil {
		t.Fatal(err)
	}
	return ingest.Message{Topic: tp, Payload: []byte(payload), ReceivedAt: time.Now()}
}

// answerClear makes the device answer every clear_emergency with payload
// on the emergency reply topic (suffix response or error).
func (r *rig) answerClear(suffix, payload string) {
	r.broker.mu.Lock()
	r.broker.answer = func(p published) {
		if !strings.HasSuffix(p.topic, "/actuator/emergency") || p.payload["command"] != "clear_emergency" {
			return
		}
		id := strings.Split(p.topic, "/")[3]
		m := message(r.t, id, "actuator/emergency/"+suffix, payload)
		handle := r.svc.HandleEmergencyResponse
		if suffix == "error" {
			handle = r.svc.HandleEmergencyError
		}
		if err := handle(context.Background(), m); err != nil {
			r.t.Errorf("emergency reply: %v", err)
		}
	}
	r.broker.mu.Unlock()
}

// events drains the live events received so far.
func (r *rig) liveEvents() []event.Event {
	var out []event.Event
	for {
		select {
		case e := <-r.feed.C:
			out = append(out, e)
		default:
			return out
		}
	}
}
