package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The engine's tests run over a real SQLite store and stand-ins for the
// other domains: an actuator service that records what it is asked and
// answers the way the real one does (a rejection, or a command that is
// acknowledged when the test says so), devices with a settable status,
// sensors with settable latest readings, and a recording alert service.

// issued is one command the engine asked for.
type issued struct {
	req actuator.Request
	off *actuator.OffRequest
	id  string
}

type fakeActuators struct {
	mu      sync.Mutex
	bus     *event.Bus
	configs map[string]actuator.Config
	states  map[string]actuator.StateView
	reject  map[string]string // target → rejection code for non-OFF commands
	log     []issued
	recs    map[string]store.ActuatorCommand
	checked int // Check calls that passed
}

func newFakeActuators(bus *event.Bus, targets ...string) *fakeActuators {
	f := &fakeActuators{
		bus:     bus,
		configs: map[string]actuator.Config{},
		states:  map[string]actuator.StateView{},
		reject:  map[string]string{},
		recs:    map[string]store.ActuatorCommand{},
	}
	for _, t := range targets {
		var esp string
		var gpio int
		_, _ = fmt.Sscanf(t, "%[^:]:%d", &esp, &gpio)
		f.configs[t] = actuator.Config{EspID: esp, GPIO: gpio, Type: "relay", Enabled: true, MaxRuntimeSeconds: 3600}
		f.states[t] = actuator.StateView{State: "off"}
	}
	return f
}

func key(esp string, gpio int) string { return fmt.Sprintf("%s:%d", esp, gpio) }

func (f *fakeActuators) Command(_ context.Context, req actuator.Request) (actuator.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(req.EspID, req.GPIO)
	if _, ok := f.configs[k]; !ok {
		return actuator.Result{Status: actuator.StatusRejected}, &actuator.Rejection{Row: 2, Code: actuator.CodeNotFound}
	}
	if code := f.reject[k]; code != "" && req.Command != "OFF" {
		return actuator.Result{Status: actuator.StatusRejected}, &actuator.Rejection{Row: 4, Code: code, Message: code}
	}
	id := uuid.NewString()
	f.log = append(f.log, issued{req: req, id: id})
	f.recs[id] = store.ActuatorCommand{ID: id, Status: actuator.StatusSent, IssuedBy: req.IssuedBy}
	return actuator.Result{CommandID: id, Status: actuator.StatusSent, Command: req.Command, Published: true}, nil
}

// Check answers what Command would, without recording the command.
func (f *fakeActuators) Check(req actuator.Request) (actuator.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(req.EspID, req.GPIO)
	if _, ok := f.configs[k]; !ok {
		return actuator.Result{Status: actuator.StatusRejected}, &actuator.Rejection{Row: 2, Code: actuator.CodeNotFound}
	}
	if code := f.reject[k]; code != "" && req.Command != "OFF" {
		return actuator.Result{Status: actuator.StatusRejected}, &actuator.Rejection{Row: 4, Code: code, Message: code}
	}
	f.checked++
	return actuator.Result{Command: req.Command, Value: 1}, nil
}

func (f *fakeActuators) Off(_ context.Context, r actuator.OffRequest) (actuator.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.configs[key(r.EspID, r.GPIO)]; !ok {
		return actuator.Result{}, actuator.ErrNotFound
	}
	id := uuid.NewString()
	f.log = append(f.log, issued{off: &r, id: id})
	f.recs[id] = store.ActuatorCommand{ID: id, Status: actuator.StatusSent, IssuedBy: r.IssuedBy}
	return actuator.Result{CommandID: id, Status: actuator.StatusSent, Command: "OFF", Published: true}, nil
}

func (f *fakeActuators) State(esp string, gpio int) (actuator.StateView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[key(esp, gpio)]
	if !ok {
		return st, actuator.ErrNotFound
	}
	return st, nil
}

func (f *fakeActuators) refuse(k, code string) {
	f.mu.Lock()
	f.reject[k] = code
	f.mu.Unlock()
}

func (f *fakeActuators) setState(k string, st actuator.StateView) {
	f.mu.Lock()
	f.states[k] = st
	f.mu.Unlock()
}

func (f *fakeActuators) Get(esp string, gpio int) (actuator.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[key(esp, gpio)]
	if !ok {
		return c, actuator.ErrNotFound
	}
	return c, nil
}

func (f *fakeActuators) ByDevice(esp string) []actuator.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []actuator.Config
	for _, c := range f.configs {
		if c.EspID == esp {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeActuators) CommandByID(_ context.Context, id string) (store.ActuatorCommand, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	if !ok {
		return r, actuator.ErrCommandNotFound
	}
	return r, nil
}

// finish ends command id with status, as the lifecycle does: the record
// changes and a command_status event is published.
func (f *fakeActuators) finish(id, status string) {
	f.mu.Lock()
	r := f.recs[id]
	r.Status = status
	f.recs[id] = r
	f.mu.Unlock()
	f.bus.Publish(event.Event{Data: event.CommandStatus{CommandID: id, Status: status}})
}

func (f *fakeActuators) issued() []issued {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]issued(nil), f.log...)
}

type fakeDevices struct {
	mu     sync.Mutex
	status map[string]string
}

func (f *fakeDevices) Get(esp string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[esp]
	if !ok {
		return device.Device{}, device.ErrNotFound
	}
	return device.Device{Device: store.Device{DeviceID: esp, Status: st}}, nil
}

func (f *fakeDevices) set(esp, status string) {
	f.mu.Lock()
	f.status[esp] = status
	f.mu.Unlock()
}

type fakeSensors struct {
	mu      sync.Mutex
	configs []sensor.Config
	latest  map[string]store.Reading // "esp:gpio:type"
}

func (f *fakeSensors) ByDevice(esp string) []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sensor.Config
	for _, c := range f.configs {
		if c.EspID == esp {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSensors) Latest(esp string, gpio int, typ string) []sensor.LatestValue {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sensor.LatestValue
	for _, c := range f.configs {
		if c.EspID != esp || c.GPIO != gpio || (typ != "" && c.SensorType != typ) {
			continue
		}
		if r, ok := f.latest[fmt.Sprintf("%s:%d:%s", esp, gpio, c.SensorType)]; ok {
			out = append(out, sensor.LatestValue{Key: store.SeriesKey{EspID: esp, GPIO: gpio, SensorType: c.SensorType}, Reading: r})
		}
	}
	return out
}

type sent struct {
	spec  notify.Spec
	users []int64
}

type fakeAlerts struct {
	mu     sync.Mutex
	raised []notify.Spec
	sent   []sent
}

func (f *fakeAlerts) Raise(_ context.Context, s notify.Spec) error {
	f.mu.Lock()
	f.raised = append(f.raised, s)
	f.mu.Unlock()
	return nil
}

func (f *fakeAlerts) Send(_ context.Context, s notify.Spec, users []int64) ([]int64, error) {
	f.mu.Lock()
	f.sent = append(f.sent, sent{s, users})
	f.mu.Unlock()
	return users, nil
}

type fakeUsers []store.User

func (f fakeUsers) Users(context.Context) ([]store.User, error) { return f, nil }

type fakePauses map[string]bool

func (f fakePauses) RulesPaused(esp string) bool { return f[esp] }

// world is an engine with its collaborators.
type world struct {
	t       testing.TB
	dir     string
	st      *sqlite.Store
	bus     *event.Bus
	acts    *fakeActuators
	devices *fakeDevices
	sensors *fakeSensors
	alerts  *fakeAlerts
	eng     *Service
	sub     *event.Subscription
	opt     Options
}

// devESP is the device of the tests' sensors and actuators.
const devESP = "ESP_12AB34"

func newWorld(t testing.TB, opt Options) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), bus: event.NewBus(), opt: opt}
	w.acts = newFakeActuators(w.bus, devESP+":25", devESP+":26", devESP+":27")
	w.devices = &fakeDevices{status: map[string]string{devESP: device.StatusOnline}}
	w.sensors = &fakeSensors{
		configs: []sensor.Config{
			{EspID: devESP, GPIO: 21, SensorType: "sht31_temp"},
			{EspID: devESP, GPIO: 4, SensorType: "ds18b20"},
			{EspID: devESP, GPIO: 35, SensorType: "ec", OperatingMode: "on_demand"},
		},
		latest: map[string]store.Reading{},
	}
	w.alerts = &fakeAlerts{}
	w.sub = w.bus.Subscribe(1024, event.TypeLogicExecution)
	w.open()
	return w
}

// open builds (or, after close, rebuilds as a restart would) the engine.
func (w *world) open() {
	w.t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// No batching wait: a commit that a rule waits for under its lock must
	// not need the bubble's clock to move.
	st, err := sqlite.Open(context.Background(), w.dir, sqlite.Options{Logger: quiet, BatchWait: -1})
	if err != nil {
		w.t.Fatal(err)
	}
	w.st = st
	opt := w.opt
	opt.Logger = quiet
	w.eng = New(Deps{
		Store:     st,
		Actuators: w.acts,
		Devices:   w.devices,
		Sensors:   w.sensors,
		Alerts:    w.alerts,
		Users: fakeUsers{
			{ID: 1, Username: "olga", Role: "operator", IsActive: true},
			{ID: 2, Username: "vic", Role: "viewer", IsActive: true},
			{ID: 3, Username: "ada", Role: "admin", IsActive: true},
			{ID: 4, Username: "gone", Role: "admin", IsActive: false},
		},
		Pauses: fakePauses{},
		Events: w.bus,
	}, opt)
	if err := w.eng.Load(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.eng.Start()
}

func (w *world) close() {
	w.t.Helper()
	w.eng.Stop()
	if err := w.st.Close(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// rule creates a rule and returns its id.
func (w *world) rule(doc string) string {
	w.t.Helper()
	r, _, err := w.eng.Create(context.Background(), []byte(doc))
	if err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) {
			w.t.Fatalf("create: %v", inv.Errors)
		}
		w.t.Fatal(err)
	}
	return r.ID
}

// reading publishes a stored reading's event, as the sensor pipeline does.
func (w *world) reading(gpio int, typ string, v float64) {
	w.bus.Publish(event.Event{Data: event.SensorData{
		EspID:          devESP,
		GPIO:           gpio,
		SensorType:     typ,
		Value:          v,
		ProcessedValue: &v,
		Quality:        "good",
		Timestamp:      time.Now().Unix(),
	}})
}

// history returns the rule's records, newest first, once everything queued is stored.
func (w *world) history(ruleID string) []Execution {
	w.t.Helper()
	if err := w.st.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	xs, _, _, err := w.eng.History(context.Background(), store.RuleExecutionFilter{
		RuleID: ruleID,
		From:   time.Now().Add(-48 * time.Hour),
		Limit:  100,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return xs
}
