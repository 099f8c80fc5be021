package actuator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	if res := f.svc.FailSafe(context.Background(), bus); res.Sent != 2 || res.Failed != 0 || res.Err != nil {
		t.Fatalf("FailSafe: %+v; want 2 sent", res)
	}
	got := bus.take()
	var topics, corrs []string
	for _, p := range got {
		if p.cmd.Command != "OFF" || p.cmd.Duration != 0 || !strings.HasPrefix(p.cmd.CorrelationID, "failsafe-") ||
			len(p.cmd.CorrelationID) > 40 {
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
	if res := f.svc.FailSafe(context.Background(), &fakeBus{err: refused}); res.Sent != 0 || res.Failed != 2 ||
		!errors.Is(res.Err, refused) {
		t.Fatalf("FailSafe on a refusing broker: %+v", res)
	}

	over, cancel := context.WithCancel(context.Background())
	cancel()
	late := &fakeBus{}
	if res := f.svc.FailSafe(over, late); res.Sent != 0 || res.Failed != 2 || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("FailSafe after its grace: %+v", res)
	}
	if n := len(late.take()); n != 0 {
		t.Fatalf("FailSafe published %d OFFs after its grace", n)
	}
}

// An ON already on its way when the fail-safe begins cannot overtake its
// OFF: the output gets a second OFF once that publish is done.
func TestFailSafeComesAfterAnOnUnderWay(t *testing.T) {
	f := newFixture(t)
	f.pump(600)
	f.status(pump, false)

	inPublish, release := make(chan struct{}), make(chan struct{})
	f.bus.onPublish = func(string) {
		close(inPublish)
		<-release
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.mustCommand("on", nil, dur(300))
	}()
	<-inPublish

	bus := &fakeBus{}
	var sentBeforeRelease int
	bus.onPublish = func(string) {
		if sentBeforeRelease++; sentBeforeRelease == 1 {
			close(release) // the ON leaves after the first OFF
		}
	}
	res := f.svc.FailSafe(context.Background(), bus)
	<-done
	if res.Sent != 1 || res.Err != nil {
		t.Fatalf("FailSafe: %+v", res)
	}
	if offs := offs(bus.take()); len(offs) != 2 {
		t.Fatalf("%d fail-safe OFFs for an output whose ON was under way, want 2 (before and after it)", len(offs))
	}
	if on := f.bus.take(); len(on) != 1 || on[0].cmd.Command != "ON" {
		t.Fatalf("the service's own publications: %+v", on)
	}
}
