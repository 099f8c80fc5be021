package sqlite

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Latches and tokens written before a close are what the next open reads;
// a latch save older than the stored version is ignored.
func TestEmergencyLatchesAndTokensSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	published := now.Add(time.Second)

	global := store.EmergencyLatch{
		Scope:                 store.LatchGlobal,
		Active:                true,
		IncidentCorrelationID: "inc-1",
		Reason:                "flood",
		ActivatedBy:           "operator",
		ActivatedAt:           now,
		StopPublishedAt:       &published,
		UpdatedAt:             now,
		Version:               2,
	}
	dev := store.EmergencyLatch{
		Scope:                 store.LatchDevicePrefix + "ESP_A1B2C3",
		EspID:                 "ESP_A1B2C3",
		IncidentCorrelationID: "inc-1",
		Reason:                "flood",
		ActivatedBy:           "operator",
		ActivatedAt:           now,
		ClearedBy:             "operator",
		ClearedAt:             &published,
		ClearAttempts:         []store.EmergencyClearAttempt{{At: published, User: "operator", Outcome: "cleared"}},
		RulesPaused:           true,
		UpdatedAt:             now,
		Version:               3,
	}
	token := store.EmergencyToken{
		Scope:     store.LatchDevicePrefix + "ESP_A1B2C3",
		EspID:     "ESP_A1B2C3",
		Token:     "Kq7f3a91c2Bd04e6",
		SentAt:    &published,
		UpdatedAt: now,
	}

	s := open(t, dir)
	if err := s.SaveLatches(ctx, []store.EmergencyLatch{global, dev}); err != nil {
		t.Fatal(err)
	}
	stale := global
	stale.Active, stale.Version = false, 1
	if err := s.SaveLatches(ctx, []store.EmergencyLatch{stale}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveEmergencyToken(ctx, token); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close(ctx)
	latches, err := s.LoadLatches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byScope := map[string]store.EmergencyLatch{}
	for _, l := range latches {
		byScope[l.Scope] = l
	}
	if got := byScope[global.Scope]; !reflect.DeepEqual(got, global) {
		t.Errorf("global latch after reopen:\n got %+v\nwant %+v", got, global)
	}
	if got := byScope[dev.Scope]; !reflect.DeepEqual(got, dev) {
		t.Errorf("device latch after reopen:\n got %+v\nwant %+v", got, dev)
	}

	tokens, err := s.LoadEmergencyTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || !reflect.DeepEqual(tokens[0], token) {
		t.Errorf("tokens after reopen: %+v, want [%+v]", tokens, token)
	}
}
