package device

import (
	"reflect"
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
