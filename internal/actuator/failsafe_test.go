package actuator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// FailSafe sends OFF to every output that may be running (an ON sent and
// not yet acknowledged, an output found on) and to no other (confirmed
// off, never heard), records nothing, and reports what the broker refused.
func TestFailSafe(t *testing.T) {
	f := newFixture(t)
	const (
		foundOn = 16
		off     = 17
		unheard = 18
	)
	f.pump(600)
	for _, gpio := range []int{foundOn, off, unheard} {
		f.configure(Config{GPIO: gpio, Type: "relay", MaxRuntimeSeconds: 600})
	}
	f.status(pump, false)
	f.status(foundOn, true)
	f.status(off, false)
	f.mustCommand("on", nil, dur(300)) // sent, not acknowledged
	f.bus.take()
	records := len(f.store.all())

	bus := &fakeBus{}
	sent, err := f.svc.FailSafe(context.Background(), bus)
	if err != nil || sent != 2 {
		t.Fatalf("FailSafe: %d sent, %v; want 2, nil", sent, err)
	}
	got := bus.take()
	var topics, corrs []string
	for _, p := range got {
		if p.cmd.Command != "OFF" || p.cmd.Duration != 0 || p.cmd.CorrelationID == "" {
			t.Fatalf("fail-safe publication %+v", p)
		}
		topics = append(topics, p.topic)
		corrs = append(corrs, p.cmd.CorrelationID)
	}
	slices.Sort(topics)
	want := []string{
		fmt.Sprintf("kaiser/god/esp/%s/actuator/%d/command", esp, foundOn),
		fmt.Sprintf("kaiser/god/esp/%s/actuator/%d/command", esp, pump),
	}
	if !slices.Equal(topics, want) {
		t.Fatalf("fail-safe OFFs to %v, want %v", topics, want)
	}
	if slices.Sort(corrs); len(slices.Compact(corrs)) != len(got) {
		t.Fatalf("correlation ids repeat: %v", corrs)
	}
	if n := len(f.store.all()); n != records {
		t.Fatalf("FailSafe stored %d command records", n-records)
	}
	if len(f.bus.take()) != 0 {
		t.Fatal("FailSafe published through the service's own bus")
	}

	refused := errors.New("broker gone")
	sent, err = f.svc.FailSafe(context.Background(), &fakeBus{err: refused})
	if sent != 0 || !errors.Is(err, refused) {
		t.Fatalf("FailSafe on a refusing broker: %d sent, %v", sent, err)
	}
}
