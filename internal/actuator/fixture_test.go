package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// memStore is the actuator persistence in memory, with the version rule of
// the SQLite store. The state save can be made to fail.
type memStore struct {
	mu       sync.Mutex
	configs  map[string]store.Doc
	states   map[key]store.ActuatorState
	cmds     map[string]store.ActuatorCommand
	stateErr error
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{
		configs: map[string]store.Doc{},
		states:  map[key]store.ActuatorState{},
		cmds:    map[string]store.ActuatorCommand{},
	}
}

func (m *memStore) SaveActuatorConfig(_ context.Context, d store.Doc) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configs[d.ID] = d
	return nil
}

func (m *memStore) DeleteActuatorConfig(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.configs[id]; ok {
		delete(m.states, key{d.EspID, d.GPIO})
	}
	delete(m.configs, id)
	return nil
}

func (m *memStore) LoadActuatorConfigs(context.Context) ([]store.Doc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.configs)), nil
}

func (m *memStore) SaveActuatorState(ctx context.Context, st store.ActuatorState) error {
	m.mu.Lock()
	err := m.stateErr
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.QueueActuatorState(ctx, st)
}

func (m *memStore) QueueActuatorState(_ context.Context, st store.ActuatorState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{st.EspID, st.GPIO}
	if old, ok := m.states[k]; !ok || st.Version > old.Version {
		m.states[k] = st
	}
	return nil
}

func (m *memStore) LoadActuatorStates(context.Context) ([]store.ActuatorState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.states)), nil
}

func (m *memStore) SaveActuatorCommand(ctx context.Context, c store.ActuatorCommand) error {
	return m.QueueActuatorCommand(ctx, c)
}

func (m *memStore) QueueActuatorCommand(_ context.Context, c store.ActuatorCommand) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.cmds[c.ID]; !ok || c.Version > old.Version {
		c.Metadata = maps.Clone(c.Metadata)
		m.cmds[c.ID] = c
	}
	return nil
}

func (m *memStore) GetActuatorCommand(_ context.Context, id string) (store.ActuatorCommand, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cmds[id]
	if !ok {
		return c, store.ErrNotFound
	}
	return c, nil
}

func (m *memStore) FindActuatorCommand(_ context.Context, corr string) (store.ActuatorCommand, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.cmds {
		if c.CorrelationID == corr && c.Status != "" {
			return c, nil
		}
	}
	return store.ActuatorCommand{}, store.ErrNotFound
}

func (m *memStore) OpenActuatorCommands(context.Context) ([]store.ActuatorCommand, error) {
	var out []store.ActuatorCommand
	for _, c := range m.all() {
		if c.Status == StatusQueued || c.Status == StatusSent {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memStore) ActuatorHistory(_ context.Context, esp string, gpio, limit int) ([]store.ActuatorCommand, int, error) {
	var out []store.ActuatorCommand
	for _, c := range m.all() {
		if c.EspID == esp && c.GPIO == gpio {
			out = append(out, c)
		}
	}
	slices.Reverse(out)
	total := len(out)
	return out[:min(limit, total)], total, nil
}

func (m *memStore) DeleteActuatorHistoryBefore(_ context.Context, before time.Time, limit int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, c := range m.cmds {
		if c.IssuedAt.Before(before) && c.Status != StatusQueued && c.Status != StatusSent && n < int64(limit) {
			delete(m.cmds, id)
			n++
		}
	}
	return n, nil
}

// all is every history row, oldest first.
func (m *memStore) all() []store.ActuatorCommand {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.cmds))
	sort.SliceStable(out, func(i, j int) bool { return out[i].IssuedAt.Before(out[j].IssuedAt) })
	return out
}

// state decodes the stored state of an actuator.
func (m *memStore) state(t *testing.T, esp string, gpio int) State {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var st State
	if rec, ok := m.states[key{esp, gpio}]; ok {
		if err := json.Unmarshal(rec.JSON, &st); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// fakeDevices is the registry: devices by id, pushes recorded.
type fakeDevices struct {
	mu     sync.Mutex
	devs   map[string]device.Device
	pushes []string
}

var _ Devices = (*fakeDevices)(nil)

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devs[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return d, nil
}

func (f *fakeDevices) Admit(m ingest.Message) (device.Device, error) {
	d, err := f.Get(m.Topic.EspID)
	if err != nil {
		return d, ingest.Drop(contract.ReasonUnknownDevice, "unknown")
	}
	if !isApproved(d.Status) {
		return d, ingest.Drop(contract.ReasonNotApproved, d.Status)
	}
	return d, nil
}

func (f *fakeDevices) PushConfig(_ context.Context, id, trigger string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushes = append(f.pushes, id+"/"+trigger)
	return "cfg-1", nil
}

func (f *fakeDevices) set(id, status string, mut ...func(*device.Device)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := device.Device{Device: store.Device{
		ID:           "uuid-" + id,
		DeviceID:     id,
		Status:       status,
		KaiserID:     "god",
		HardwareType: "ESP32_WROOM",
		Metadata:     map[string]any{},
	}}
	for _, fn := range mut {
		fn(&d)
	}
	f.devs[id] = d
}

type fakeSensors map[string][]sensor.Config

func (f fakeSensors) ByDevice(id string) []sensor.Config { return f[id] }

// published is one hub publication, decoded when it is a command.
type published struct {
	topic string
	cmd   contract.ActuatorCommand
	raw   map[string]any
}

// fakeBus records publications; err makes them fail.
type fakeBus struct {
	mu   sync.Mutex
	sent []published
	err  error
	// onPublish runs at each publish (before it is recorded).
	onPublish func(topic string, payload []byte)
}

func (b *fakeBus) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	b.mu.Lock()
	hook, err := b.onPublish, b.err
	b.mu.Unlock()
	if hook != nil {
		hook(topic, payload)
	}
	if err != nil {
		return err
	}
	var raw map[string]any
	_ = json.Unmarshal(payload, &raw)
	p := published{topic: topic, raw: raw}
	p.cmd.Command, _ = raw["command"].(string)
	if v, ok := raw["value"].(float64); ok {
		p.cmd.Value.V = v
	}
	if d, ok := raw["duration"].(float64); ok {
		p.cmd.Duration = int64(d)
	}
	p.cmd.CorrelationID, _ = raw["correlation_id"].(string)
	b.mu.Lock()
	b.sent = append(b.sent, p)
	b.mu.Unlock()
	return nil
}

// take returns and forgets the publications so far.
func (b *fakeBus) take() []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.sent
	b.sent = nil
	return out
}

type fakeAlerts struct {
	mu    sync.Mutex
	specs []notify.Spec
}

func (a *fakeAlerts) Raise(_ context.Context, s notify.Spec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.specs = append(a.specs, s)
	return nil
}

func (a *fakeAlerts) all() []notify.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.specs)
}

// fakeLatches is the emergency part's hub latches.
type fakeLatches struct {
	mu  sync.Mutex
	set map[string]bool
	// asked, when set, is told of every check.
	asked chan string
}

func (l *fakeLatches) Latched(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.asked != nil {
		select {
		case l.asked <- id:
		default:
		}
	}
	return l.set[id] || l.set["*"]
}

func (l *fakeLatches) latch(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set[id] = true
}

const (
	esp  = "ESP_A1B2C3"
	pump = 5
)

// fixture is a loaded, started service with fakes around it.
type fixture struct {
	t       *testing.T
	svc     *Service
	store   *memStore
	devices *fakeDevices
	sensors fakeSensors
	bus     *fakeBus
	alerts  *fakeAlerts
	latches *fakeLatches
	events  *event.Bus
	sub     *event.Subscription
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		store:   newMemStore(),
		devices: &fakeDevices{devs: map[string]device.Device{}},
		sensors: fakeSensors{},
		bus:     &fakeBus{},
		alerts:  &fakeAlerts{},
		latches: &fakeLatches{set: map[string]bool{}},
		events:  event.NewBus(),
	}
	f.devices.set(esp, device.StatusOnline)
	f.start()
	return f
}

// start builds and loads a service over the fixture's store (a restart).
func (f *fixture) start() {
	f.t.Helper()
	if f.svc != nil {
		f.svc.Stop()
	}
	f.sub = f.events.Subscribe(4096)
	f.svc = New(f.store, f.devices, f.sensors, f.bus, f.events, f.alerts, Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	f.svc.SetLatches(f.latches)
	if err := f.svc.Load(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.svc.Start()
	f.t.Cleanup(f.svc.Stop)
}

// configure stores an actuator (defaults of the REST layer filled in).
func (f *fixture) configure(c Config) Config {
	f.t.Helper()
	c.EspID = cmp(c.EspID, esp)
	if c.MaxValue == 0 {
		c.MaxValue = 1
	}
	c.Enabled = true
	out, err := f.svc.Upsert(context.Background(), c)
	if err != nil {
		f.t.Fatalf("upsert %+v: %v", c, err)
	}
	return out
}

func cmp(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

func (f *fixture) pump(maxRuntime int) Config {
	return f.configure(Config{GPIO: pump, Type: "pump", MaxRuntimeSeconds: maxRuntime})
}

func dur(n int64) *int64     { return &n }
func val(v float64) *float64 { return &v }

func (f *fixture) command(cmd string, value *float64, duration *int64) (Result, error) {
	return f.svc.Command(context.Background(), Request{
		EspID:    esp,
		GPIO:     pump,
		Command:  cmd,
		Value:    value,
		Duration: duration,
		IssuedBy: "user:op",
	})
}

func (f *fixture) mustCommand(cmd string, value *float64, duration *int64) Result {
	f.t.Helper()
	r, err := f.command(cmd, value, duration)
	if err != nil {
		f.t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// message is a live device message on the device's topic.
func (f *fixture) message(suffix string, payload map[string]any) ingest.Message {
	f.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	tp, err := contract.ParseTopic("kaiser/god/esp/" + esp + "/" + suffix)
	if err != nil {
		f.t.Fatal(err)
	}
	return ingest.Message{Topic: tp, Payload: b, ReceivedAt: time.Now()}
}

// status reports the actuator on gpio like the baseline firmware.
func (f *fixture) status(gpio int, on bool, extra ...map[string]any) {
	f.t.Helper()
	pwm := 0
	if on {
		pwm = 255
	}
	p := map[string]any{"ts": 0, "gpio": gpio, "type": "pump", "state": on, "pwm": pwm, "emergency": "normal"}
	for _, e := range extra {
		if _, ok := e["value"]; ok {
			delete(p, "pwm") // a mock reporting `value` instead
		}
		maps.Copy(p, e)
	}
	if err := f.svc.HandleStatus(context.Background(), f.message(fmt.Sprintf("actuator/%d/status", gpio), p)); err != nil {
		f.t.Fatalf("status: %v", err)
	}
}

// respond answers a command like the firmware; corr "" = baseline (no echo).
func (f *fixture) respond(gpio int, cmd string, success bool, corr string) {
	f.t.Helper()
	p := map[string]any{"esp_id": esp, "ts": 0, "gpio": gpio, "command": cmd, "value": 1.0, "duration": 0,
		"success": success, "message": map[bool]string{true: "Command executed", false: "Command failed"}[success]}
	if corr != "" {
		p["correlation_id"] = corr
	}
	if err := f.svc.HandleResponse(context.Background(), f.message(fmt.Sprintf("actuator/%d/response", gpio), p)); err != nil {
		f.t.Fatalf("response: %v", err)
	}
}

func (f *fixture) alert(gpio int, typ string) {
	f.t.Helper()
	p := map[string]any{"esp_id": esp, "ts": 0, "gpio": gpio, "alert_type": typ, "message": "Actuator stopped"}
	if err := f.svc.HandleAlert(context.Background(), f.message(fmt.Sprintf("actuator/%d/alert", gpio), p)); err != nil {
		f.t.Fatalf("alert: %v", err)
	}
}

// cmd returns a stored command.
func (f *fixture) cmd(id string) store.ActuatorCommand {
	f.t.Helper()
	c, err := f.store.GetActuatorCommand(context.Background(), id)
	if err != nil {
		f.t.Fatalf("command %s: %v", id, err)
	}
	return c
}

// commands lists stored command rows matching pred, oldest first.
func (f *fixture) commands(pred func(store.ActuatorCommand) bool) []store.ActuatorCommand {
	var out []store.ActuatorCommand
	for _, c := range f.store.all() {
		if pred(c) {
			out = append(out, c)
		}
	}
	return out
}

func issuedBy(by string) func(store.ActuatorCommand) bool {
	return func(c store.ActuatorCommand) bool { return c.IssuedBy == by }
}

// offs are the OFF commands among publications.
func offs(ps []published) []published {
	var out []published
	for _, p := range ps {
		if p.cmd.Command == "OFF" {
			out = append(out, p)
		}
	}
	return out
}

// drain returns the events received so far.
func (f *fixture) drain() []event.Event {
	var out []event.Event
	for {
		select {
		case e := <-f.sub.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

func commandStatuses(evs []event.Event, id string) []string {
	var out []string
	for _, e := range evs {
		if cs, ok := e.Data.(event.CommandStatus); ok && cs.CommandID == id {
			out = append(out, cs.Status)
		}
	}
	return out
}

func rejection(err error) *Rejection {
	var r *Rejection
	if errors.As(err, &r) {
		return r
	}
	return nil
}

func hasWord(s, w string) bool { return strings.Contains(s, w) }

type storeRow = store.ActuatorCommand
