package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func latch(scope string, version int64, active bool) store.EmergencyLatch {
	l := store.EmergencyLatch{Scope: scope, Active: active, IncidentCorrelationID: "inc-1", Reason: "flood",
		ActivatedBy: "admin", ActivatedAt: base, UpdatedAt: base.Add(time.Duration(version) * time.Second),
		Version: version}
	if scope != store.LatchGlobal {
		l.EspID = scope[len(store.LatchDevicePrefix):]
	}
	return l
}

// Latch saves are versioned and commit before SaveLatches returns; every
// field reads back.
func latchSavesKeepTheNewestVersion(t *testing.T, s Subject) {
	c := ctx(t)
	global := latch(store.LatchGlobal, 2, true)
	global.StopPublishedAt = ptr(base.Add(time.Second))
	dev := latch(store.LatchDevicePrefix+"ESP_E1", 1, true)
	must(t, s.Store.SaveLatches(c, []store.EmergencyLatch{global, dev}))

	cleared := latch(store.LatchDevicePrefix+"ESP_E1", 3, false)
	cleared.ClearedBy, cleared.ClearedAt, cleared.RulesPaused = "op", ptr(base.Add(time.Minute)), true
	cleared.ClearAttempts = []store.EmergencyClearAttempt{
		{At: base.Add(30 * time.Second), User: "op", Outcome: "refused", Message: "guard"},
		{At: base.Add(time.Minute), User: "op", Outcome: "cleared", Message: ""},
	}
	stale := latch(store.LatchGlobal, 1, false) // older than the stored version 2
	must(t, s.Store.SaveLatches(c, []store.EmergencyLatch{cleared, stale}))

	got, err := s.Store.LoadLatches(c)
	must(t, err)
	want := []store.EmergencyLatch{cleared, global}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("latches\n got %+v\nwant %+v", got, want)
	}

	tok := store.EmergencyToken{Scope: store.TokenBroadcast, Token: "t1", UpdatedAt: base}
	must(t, s.Store.SaveEmergencyToken(c, tok))
	tok.Token, tok.SentAt, tok.ConfirmedAt, tok.UpdatedAt = "t2", ptr(base), ptr(base.Add(time.Second)), base.Add(time.Second)
	must(t, s.Store.SaveEmergencyToken(c, tok))
	toks, err := s.Store.LoadEmergencyTokens(c)
	must(t, err)
	if !reflect.DeepEqual(toks, []store.EmergencyToken{tok}) {
		t.Fatalf("tokens %+v", toks)
	}
}

func command(id string, version int64, status string, issued time.Time) store.ActuatorCommand {
	return store.ActuatorCommand{ID: id, EspID: "ESP_X1", GPIO: 5, ActuatorType: "pump", CommandType: "ON",
		Command: "ON", Value: 1, Duration: 60, IssuedBy: "rule:r1", CorrelationID: id, Status: status,
		Metadata: map[string]any{"attempt": float64(version)}, IssuedAt: issued, Version: version}
}

// Command rows are versioned like device records: a save or a queued
// update that is older than the stored row is dropped.
func actuatorCommandsKeepTheNewestVersion(t *testing.T, s Subject) {
	c := ctx(t)
	must(t, s.Store.SaveActuatorCommand(c, command("cmd-1", 1, "queued", base)))
	acked := command("cmd-1", 3, "acknowledged", base)
	acked.Success, acked.SentAt, acked.CompletedAt = ptr(true), ptr(base.Add(time.Second)), ptr(base.Add(2*time.Second))
	acked.ResponseMessage = "ok"
	must(t, s.Store.QueueActuatorCommand(c, acked))
	flush(t, s.Store)
	must(t, s.Store.SaveActuatorCommand(c, command("cmd-1", 2, "sent", base))) // stale

	got, err := s.Store.GetActuatorCommand(c, "cmd-1")
	must(t, err)
	if !reflect.DeepEqual(got, acked) {
		t.Fatalf("command\n got %+v\nwant %+v", got, acked)
	}
	if _, err := s.Store.GetActuatorCommand(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing command: %v", err)
	}

	must(t, s.Store.SaveActuatorCommand(c, command("cmd-2", 1, "sent", base.Add(time.Minute))))
	must(t, s.Store.SaveActuatorCommand(c, command("cmd-3", 1, "queued", base.Add(2*time.Minute))))
	ev := command("evt-1", 1, "", base.Add(3*time.Minute)) // a device event, not a command
	ev.CorrelationID = "cmd-2"
	must(t, s.Store.SaveActuatorCommand(c, ev))

	found, err := s.Store.FindActuatorCommand(c, "cmd-2")
	must(t, err)
	if found.ID != "cmd-2" {
		t.Fatalf("correlation cmd-2 found %s, want the command, not the event", found.ID)
	}
	open, err := s.Store.OpenActuatorCommands(c)
	must(t, err)
	if len(open) != 2 || open[0].ID != "cmd-2" || open[1].ID != "cmd-3" {
		t.Fatalf("open commands %+v", open)
	}
	hist, total, err := s.Store.ActuatorHistory(c, "ESP_X1", 5, 2)
	must(t, err)
	if total != 4 || len(hist) != 2 || hist[0].ID != "evt-1" || hist[1].ID != "cmd-3" {
		t.Fatalf("history total %d %+v", total, hist)
	}
	// Retention takes finished rows only, oldest first.
	n, err := s.Store.DeleteActuatorHistoryBefore(c, base.Add(time.Hour), 10)
	must(t, err)
	if n != 2 {
		t.Fatalf("deleted %d history rows, want the 2 finished ones", n)
	}
	if open, _ := s.Store.OpenActuatorCommands(c); len(open) != 2 {
		t.Fatalf("retention removed open commands: %d left", len(open))
	}
}

func actuatorConfigsAndStates(t *testing.T, s Subject) {
	c := ctx(t)
	cfg := store.Doc{ID: "act-1", EspID: "ESP_X1", GPIO: 5, Kind: "pump", JSON: []byte(`{"max_runtime":60}`),
		CreatedAt: base, UpdatedAt: base}
	must(t, s.Store.SaveActuatorConfig(c, cfg))
	dup := cfg
	dup.ID = "act-2"
	if err := s.Store.SaveActuatorConfig(c, dup); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second config on one pin: %v, want ErrDuplicate", err)
	}
	cfgs, err := s.Store.LoadActuatorConfigs(c)
	must(t, err)
	if len(cfgs) != 1 || !reflect.DeepEqual(cfgs[0], cfg) {
		t.Fatalf("configs %+v", cfgs)
	}

	st := func(v int64, doc string) store.ActuatorState {
		return store.ActuatorState{EspID: "ESP_X1", GPIO: 5, JSON: []byte(doc), UpdatedAt: base, Version: v}
	}
	must(t, s.Store.SaveActuatorState(c, st(2, `{"state":"on"}`)))
	must(t, s.Store.QueueActuatorState(c, st(1, `{"state":"off"}`))) // stale
	flush(t, s.Store)
	states, err := s.Store.LoadActuatorStates(c)
	must(t, err)
	if len(states) != 1 || string(states[0].JSON) != `{"state":"on"}` || states[0].Version != 2 {
		t.Fatalf("states %+v", states)
	}
	must(t, s.Store.DeleteActuatorConfig(c, "act-1"))
	states, err = s.Store.LoadActuatorStates(c)
	must(t, err)
	cfgs, _ = s.Store.LoadActuatorConfigs(c)
	if len(states) != 0 || len(cfgs) != 0 {
		t.Fatalf("after delete: %d configs, %d states", len(cfgs), len(states))
	}
}
