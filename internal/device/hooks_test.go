package device

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// The push hooks hear a push once when it is published and once when it
// settles, with its trigger, correlation id and section results.
func TestPushHooks(t *testing.T) {
	h := newHarness(t, Config{})
	var mu sync.Mutex
	var published, settled []PushResult
	h.svc.OnPushPublished(func(r PushResult) {
		mu.Lock()
		published = append(published, r)
		mu.Unlock()
	})
	h.svc.OnPushResult(func(r PushResult) {
		mu.Lock()
		settled = append(settled, r)
		mu.Unlock()
	})

	p := h.pushedOnline(sensorItem(4, "soil"))
	mu.Lock()
	gotPublished := append([]PushResult(nil), published...)
	mu.Unlock()
	want := PushResult{
		EspID:         testID,
		CorrelationID: p.CorrelationID,
		Trigger:       "online",
		Status:        PushPending,
		Sections:      map[string]string{"sensor": PushPending},
	}
	if len(gotPublished) != 1 || !reflect.DeepEqual(gotPublished[0], want) {
		t.Fatalf("published hook: %+v, want [%+v]", gotPublished, want)
	}

	if err := h.respond(ok("sensor")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want.Status, want.Sections = PushApplied, map[string]string{"sensor": PushApplied}
	if len(settled) != 1 || !reflect.DeepEqual(settled[0], want) {
		t.Fatalf("settled hook: %+v, want [%+v]", settled, want)
	}
	if len(published) != 1 {
		t.Errorf("the answer called the published hook again: %+v", published)
	}
}

// A committed deletion is told to the OnDeleted hooks with the device id
// (its credentials go with it); Status still names the deleted device,
// which Get no longer finds.
func TestDeletionHooksAndStatus(t *testing.T) {
	h := newHarness(t, Config{})
	h.beat(10)
	var deleted []string
	h.svc.OnDeleted(func(_ context.Context, id string) { deleted = append(deleted, id) })
	if st, ok := h.svc.Status(testID); !ok || st != StatusPending {
		t.Fatalf("status %q %v", st, ok)
	}
	if err := h.svc.Delete(context.Background(), "ESP_NOPE01", "admin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
	if err := h.svc.Delete(context.Background(), testID, "admin"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, []string{testID}) {
		t.Fatalf("hooks told %v", deleted)
	}
	if st, ok := h.svc.Status(testID); !ok || st != StatusDeleted {
		t.Fatalf("status after delete %q %v", st, ok)
	}
	if _, ok := h.svc.Status("ESP_NOPE01"); ok {
		t.Fatal("an unknown id has a status")
	}
}
