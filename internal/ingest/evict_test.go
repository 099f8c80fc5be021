package ingest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/kaiserhub/kaiser/internal/contract"
)

func willTopic(id string) string { return "kaiser/god/esp/" + id + "/system/will" }

// Drop-oldest makes room by evicting the oldest telemetry, never a will or
// a heartbeat queued before it; a queue holding nothing but lifecycle
// messages drops the new telemetry instead.
func TestDropOldestEvictsTelemetryOnly(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 1, QueueCapacity: 4})
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []string
	handler := func(_ context.Context, m Message) error {
		if string(m.Payload) == "busy" {
			entered <- struct{}{}
			<-gate
		}
		mu.Lock()
		got = append(got, string(m.Payload))
		mu.Unlock()
		return nil
	}
	for _, k := range []contract.Kind{contract.KindSensorData, contract.KindHeartbeat, contract.KindWill} {
		d.Handle(k, handler)
	}
	d.Start()

	// The worker holds the first message; the queue of 4 fills behind it
	// with the will and the heartbeat first.
	d.Submit(dataTopic("DEV"), []byte("busy"), false, false)
	<-entered
	d.Submit(willTopic("DEV"), []byte("will"), false, false)
	d.Submit(hbTopic("DEV"), []byte("hb"), false, false)
	d.Submit(dataTopic("DEV"), []byte("s1"), false, false)
	d.Submit(dataTopic("DEV"), []byte("s2"), false, false)
	d.Submit(dataTopic("DEV"), []byte("s3"), false, false) // evicts s1, not the will
	d.Submit(dataTopic("DEV"), []byte("s4"), false, false) // evicts s2, not the heartbeat

	// Lifecycle only: the new reading is the one dropped.
	d.Submit(willTopic("LIFE"), []byte("w1"), false, false)
	d.Submit(hbTopic("LIFE"), []byte("h1"), false, false)
	d.Submit(hbTopic("LIFE"), []byte("h2"), false, false)
	d.Submit(willTopic("LIFE"), []byte("w2"), false, false)
	d.Submit(dataTopic("LIFE"), []byte("late-reading"), false, false)

	close(gate)
	stop(t, d)

	mu.Lock()
	defer mu.Unlock()
	var dev, life []string
	for _, p := range got {
		switch p {
		case "busy", "will", "hb", "s1", "s2", "s3", "s4":
			dev = append(dev, p)
		default:
			life = append(life, p)
		}
	}
	if want := []string{"busy", "will", "hb", "s3", "s4"}; !slices.Equal(dev, want) {
		t.Fatalf("DEV handled %v, want %v: drop-oldest must evict telemetry, not lifecycle", dev, want)
	}
	if want := []string{"w1", "h1", "h2", "w2"}; !slices.Equal(life, want) {
		t.Fatalf("LIFE handled %v, want %v", life, want)
	}
	if c := d.DeviceCounters("DEV"); c.Dropped[contract.ReasonQueueOverflow] != 2 {
		t.Fatalf("DEV counters %+v: two evicted readings", c)
	}
	if c := d.DeviceCounters("LIFE"); c.Dropped[contract.ReasonQueueOverflow] != 1 {
		t.Fatalf("LIFE counters %+v: the reading that found no room", c)
	}
}
