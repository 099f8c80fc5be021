package sequence

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The runner's tests run in synctest bubbles over a real SQLite store, with
// an actuator service that records what it is asked and answers as the
// test says (acknowledged at once, never, or a rejection), and an engine
// that records the notifications it is asked to deliver.

// issued is one command or hub OFF the runner asked for.
type issued struct {
	req actuator.Request
	off *actuator.OffRequest
	id  string
	at  time.Time
}

func (i issued) target() string {
	if i.off != nil {
		return fmt.Sprintf("%s:%d", i.off.EspID, i.off.GPIO)
	}
	return fmt.Sprintf("%s:%d", i.req.EspID, i.req.GPIO)
}

type fakeActuators struct {
	mu     sync.Mutex
	bus    *event.Bus
	answer map[string][]string // target → the outcomes of its next commands ("" = no answer)
	reject map[string]string   // target → rejection code for non-OFF commands
	log    []issued
	recs   map[string]store.ActuatorCommand
}

func newFakeActuators(bus *event.Bus) *fakeActuators {
	return &fakeActuators{bus: bus, answer: map[string][]string{}, reject: map[string]string{},
		recs: map[string]store.ActuatorCommand{}}
}

// answers sets the outcomes of target's next commands; without one a
// command is acknowledged.
func (f *fakeActuators) answers(target string, outcomes ...string) {
	f.mu.Lock()
	f.answer[target] = outcomes
	f.mu.Unlock()
}

func (f *fakeActuators) Command(_ context.Context, req actuator.Request) (actuator.Result, error) {
	f.mu.Lock()
	k := fmt.Sprintf("%s:%d", req.EspID, req.GPIO)
	if code := f.reject[k]; code != "" && req.Command != "OFF" {
		f.mu.Unlock()
		return actuator.Result{Status: actuator.StatusRejected}, &actuator.Rejection{Row: 4, Code: code, Message: "refused: " + code}
	}
	id := uuid.NewString()
	f.log = append(f.log, issued{req: req, id: id, at: time.Now()})
	f.recs[id] = store.ActuatorCommand{ID: id, Status: actuator.StatusSent, IssuedBy: req.IssuedBy}
	outcome := actuator.StatusAcknowledged
	if next := f.answer[k]; len(next) > 0 {
		outcome, f.answer[k] = next[0], next[1:]
	}
	f.mu.Unlock()
	value := 1.0
	if req.Value != nil {
		value = *req.Value
	}
	if outcome != "" {
		// The answer comes as the lifecycle gives it: an event after the call.
		go f.finish(id, outcome)
	}
	return actuator.Result{CommandID: id, Status: actuator.StatusSent, Command: req.Command, Value: value, Published: true}, nil
}

func (f *fakeActuators) Off(_ context.Context, r actuator.OffRequest) (actuator.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := uuid.NewString()
	f.log = append(f.log, issued{off: &r, id: id, at: time.Now()})
	f.recs[id] = store.ActuatorCommand{ID: id, Status: actuator.StatusSent, IssuedBy: r.IssuedBy}
	return actuator.Result{CommandID: id, Status: actuator.StatusSent, Command: "OFF", Published: true}, nil
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

// finish ends command id with status: the record changes, then the
// command_status event is published.
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

// offs lists the hub OFFs (the cleanup OFFs) by target.
func (f *fakeActuators) offs() []string {
	var out []string
	for _, i := range f.issued() {
		if i.off != nil {
			out = append(out, i.target())
		}
	}
	return out
}

type delivery struct {
	rule rule.Rule
	n    rule.Notification
	trig rule.Trigger
	md   map[string]any
}

type fakeEngine struct {
	mu       sync.Mutex
	sent     []delivery
	fail     error
	noTokens bool
}

func (f *fakeEngine) Deliver(_ context.Context, r *rule.Rule, n *rule.Notification, trig rule.Trigger,
	md map[string]any) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.sent = append(f.sent, delivery{*r, *n, trig, md})
	return "delivered to 2 users", nil
}

func (f *fakeEngine) AdmitStep(string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.noTokens
}

type codedErr struct{ code string }

func (e codedErr) Error() string     { return "delivery: " + e.code }
func (e codedErr) ErrorCode() string { return e.code }

// world is a runner with its collaborators.
type world struct {
	t      *testing.T
	dir    string
	st     *sqlite.Store
	bus    *event.Bus
	acts   *fakeActuators
	engine *fakeEngine
	svc    *Service
	sub    *event.Subscription
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), bus: event.NewBus(), engine: &fakeEngine{}}
	w.acts = newFakeActuators(w.bus)
	w.sub = w.bus.Subscribe(4096, event.TypeSequenceStarted, event.TypeSequenceStep, event.TypeSequenceCompleted,
		event.TypeSequenceError, event.TypeSequenceCancelled)
	w.open()
	return w
}

// open builds (or, after close, rebuilds as a restart would) the runner.
func (w *world) open() {
	w.t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(context.Background(), w.dir, sqlite.Options{Logger: quiet, BatchWait: -1})
	if err != nil {
		w.t.Fatal(err)
	}
	w.st = st
	w.svc = New(Deps{Store: st, Actuators: w.acts, Engine: w.engine, Events: w.bus}, Options{Logger: quiet})
	if err := w.svc.Load(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.svc.Resume()
}

func (w *world) close() {
	w.t.Helper()
	w.svc.Stop()
	if err := w.st.Close(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// ruleOf decodes a rule document; its first action is a sequence.
func ruleOf(t *testing.T, doc string) *rule.Rule {
	t.Helper()
	r, issues := rule.Decode([]byte(doc))
	if len(issues) > 0 {
		t.Fatalf("decode: %v", issues)
	}
	r.ID = "rule-1"
	return &r
}

func seqOf(t *testing.T, doc string) *rule.Sequence { return ruleOf(t, doc).Actions[0].Sequence }

// trigger is a moisture reading of 31.2.
func trigger() rule.Trigger {
	v := 31.2
	gpio := 34
	return rule.Trigger{Kind: rule.TriggerSensor, EspID: "ESP_A1B2C3", GPIO: &gpio, SensorType: "moisture", Value: &v}
}

// start starts the sequence of a rule document.
func (w *world) start(doc string) string {
	w.t.Helper()
	r := ruleOf(w.t, doc)
	id, err := w.svc.Start(context.Background(), r, r.Actions[0].Sequence, trigger())
	if err != nil {
		w.t.Fatalf("start: %v", err)
	}
	return id
}

// events drains the sequence events seen so far.
func (w *world) events() []event.Payload {
	var out []event.Payload
	for {
		select {
		case e := <-w.sub.C:
			out = append(out, e.Data)
		default:
			return out
		}
	}
}

// stored is the sequence's row as the store has it.
func (w *world) stored(id string) store.Sequence {
	w.t.Helper()
	rows, err := w.st.LoadSequences(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	for _, r := range rows {
		if r.ID == id {
			return r
		}
	}
	w.t.Fatalf("sequence %s not stored", id)
	return store.Sequence{}
}

func (w *world) view(id string) View {
	w.t.Helper()
	v, err := w.svc.Get(id)
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}
