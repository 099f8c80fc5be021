package ingest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

func TestArrivalRateIsTheMeanOfTheLastCompleteSeconds(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	a := newArrivals(t0)
	at := func(sec int64, ms int) time.Time {
		return t0.Add(time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}

	if r := a.perSecond(at(0, 500)); r != 0 {
		t.Fatalf("before a complete second: %v", r)
	}
	for range 30 {
		a.add(at(0, 100))
	}
	if r := a.perSecond(at(1, 0)); r != 30 {
		t.Fatalf("after one second with 30: %v, want 30", r)
	}
	for s := int64(1); s < 20; s++ {
		for range 10 {
			a.add(at(s, 10))
		}
	}
	a.add(at(20, 0)) // the current second does not count yet
	if r := a.perSecond(at(20, 999)); r != 10 {
		t.Fatalf("steady 10/s: %v", r)
	}
	// Quiet for 5 s: half the window is empty.
	if r := a.perSecond(at(25, 0)); r != 5.1 {
		t.Fatalf("after 5 quiet seconds: %v, want (5×10 + 1) / 10", r)
	}
	if r := a.perSecond(at(60, 0)); r != 0 {
		t.Fatalf("after a minute of silence: %v", r)
	}
}

func TestDroppedTotalsByReason(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{})
	d.Handle(contract.KindHeartbeat, func(context.Context, Message) error {
		return Drop(contract.ReasonNotApproved, "pending")
	})
	d.Start()
	d.Submit("kaiser/god/esp/E1/nonsense", []byte("{}"), false, false)
	d.Submit("kaiser/god/esp/E1/system/heartbeat", make([]byte, 4097), false, false)
	d.Submit("kaiser/god/esp/E2/system/heartbeat", []byte("{}"), false, false)
	d.Submit("kaiser/god/esp/E3/system/heartbeat", []byte("{}"), false, false)
	stop(t, d)

	got := d.Dropped()
	want := map[string]int64{
		contract.ReasonUnknownTopic: 1,
		contract.ReasonOversize:     1,
		contract.ReasonNotApproved:  2,
	}
	if len(got) != len(want) {
		t.Fatalf("dropped %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("dropped %v, want %v", got, want)
		}
	}
	got[contract.ReasonOversize] = 99
	if d.Dropped()[contract.ReasonOversize] != 1 {
		t.Fatal("Dropped must return a copy")
	}
}

// Concurrent arrivals, also across a second's turn, are all counted.
func TestArrivalsCountConcurrentDeliveries(t *testing.T) {
	t0 := time.Unix(2_000_000, 0)
	a := newArrivals(t0.Add(-time.Hour))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				a.add(t0.Add(time.Duration((g*1000+i)%2) * time.Second)) // alternate between two seconds
			}
		}()
	}
	wg.Wait()
	if r := a.perSecond(t0.Add(2 * time.Second)); r != 8000.0/10 {
		t.Fatalf("rate %v, want 8000 arrivals over the 10 s window", r)
	}
}
