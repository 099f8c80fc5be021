package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Configs, states and history rows survive a reopen; a config's delete
// takes its state along and leaves its history.
func TestActuatorRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	t0 := time.Now().UTC().Truncate(time.Millisecond)

	cfg := store.Doc{
		ID:        "a1",
		EspID:     "ESP_A1",
		GPIO:      5,
		Kind:      "pump",
		JSON:      []byte(`{"gpio":5}`),
		CreatedAt: t0,
		UpdatedAt: t0,
	}
	if err := s.SaveActuatorConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.ID = "a2"
	if err := s.SaveActuatorConfig(ctx, cfg); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second config on one pin: %v", err)
	}
	st := store.ActuatorState{EspID: "ESP_A1", GPIO: 5, JSON: []byte(`{"state":"on"}`), UpdatedAt: t0, Version: 2}
	if err := s.SaveActuatorState(ctx, st); err != nil {
		t.Fatal(err)
	}
	older := st
	older.JSON, older.Version = []byte(`{"state":"off"}`), 1
	if err := s.QueueActuatorState(ctx, older); err != nil {
		t.Fatal(err)
	}

	ok := true
	sent := t0.Add(time.Second)
	cmds := []store.ActuatorCommand{
		{ID: "c1", EspID: "ESP_A1", GPIO: 5, CommandType: "ON", Command: "ON", Value: 1, Duration: 20,
			IssuedBy: "user:op", CorrelationID: "c1", Status: "sent", IssuedAt: t0, SentAt: &sent,
			Metadata: map[string]any{"warnings": []any{"duration_clamped"}}},
		{ID: "c2", EspID: "ESP_A1", GPIO: 5, CommandType: "OFF", Command: "OFF", IssuedBy: "system:duration",
			CorrelationID: "c2", Status: "queued", IssuedAt: t0.Add(2 * time.Second)},
		{ID: "e1", EspID: "ESP_A1", GPIO: 5, CommandType: "ALERT_EMERGENCY_STOP", IssuedBy: "esp32_alert",
			Success: new(bool), IssuedAt: t0.Add(3 * time.Second)},
		{ID: "c0", EspID: "ESP_A1", GPIO: 5, CommandType: "OFF", Command: "OFF", IssuedBy: "user:op",
			CorrelationID: "c0", Status: "acknowledged", Success: &ok, IssuedAt: t0.Add(-time.Hour)},
	}
	for _, c := range cmds {
		c.Version = 2
		if err := s.QueueActuatorCommand(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	stale := cmds[0]
	stale.Status, stale.Version = "queued", 1
	if err := s.SaveActuatorCommand(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close(ctx)
	docs, err := s.LoadActuatorConfigs(ctx)
	if err != nil || len(docs) != 1 || docs[0].Kind != "pump" || !docs[0].UpdatedAt.Equal(t0) {
		t.Fatalf("configs %+v %v", docs, err)
	}
	states, err := s.LoadActuatorStates(ctx)
	if err != nil || len(states) != 1 || string(states[0].JSON) != `{"state":"on"}` {
		t.Fatalf("states %+v %v (an older version never replaces a newer one)", states, err)
	}

	open, err := s.OpenActuatorCommands(ctx)
	if err != nil || len(open) != 2 || open[0].ID != "c1" || open[1].ID != "c2" {
		t.Fatalf("open commands %+v %v", open, err)
	}
	if c := open[0]; c.SentAt == nil || !c.SentAt.Equal(sent) || c.Success != nil || c.Duration != 20 ||
		len(c.Metadata["warnings"].([]any)) != 1 {
		t.Fatalf("sent command %+v", c)
	}

	byCorr, err := s.FindActuatorCommand(ctx, "c2")
	if err != nil || byCorr.IssuedBy != "system:duration" {
		t.Fatalf("by correlation %+v %v", byCorr, err)
	}
	if _, err := s.GetActuatorCommand(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown command: %v", err)
	}

	rows, total, err := s.ActuatorHistory(ctx, "ESP_A1", 5, 2)
	if err != nil || total != 4 || len(rows) != 2 || rows[0].ID != "e1" || rows[1].ID != "c2" {
		t.Fatalf("history %+v %d %v", rows, total, err)
	}
	if rows[0].Success == nil || *rows[0].Success {
		t.Fatalf("event success: %+v", rows[0])
	}

	n, err := s.DeleteActuatorHistoryBefore(ctx, t0, 100)
	if err != nil || n != 1 {
		t.Fatalf("retention deleted %d %v (only the old finished row)", n, err)
	}

	if err := s.DeleteActuatorConfig(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	docs, _ = s.LoadActuatorConfigs(ctx)
	states, _ = s.LoadActuatorStates(ctx)
	if _, total, _ := s.ActuatorHistory(ctx, "ESP_A1", 5, 10); len(docs) != 0 || len(states) != 0 || total != 3 {
		t.Fatalf("after delete: %d configs, %d states, %d history rows", len(docs), len(states), total)
	}
}
