package faults

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// Promise: a QoS 1 PUBACK means the reading is committed (docs/protocol.md
// M3). The hub is SIGKILLed while 20 devices publish as fast as their
// PUBACKs come back; after a restart every acknowledged reading is stored.
func TestSIGKILLDuringQoS1IngestKeepsEveryAcknowledgedReading(t *testing.T) {
	h := startHub(t, t.TempDir())
	token := h.setupAdmin()
	const devices, inFlight, target = 20, 8, 2000
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("ESP_%06X", 0xF00000+i)
		h.register(token, ids[i])
	}
	base := time.Now().Unix() - 20*3600

	var mu sync.Mutex
	acked := make([][]int64, devices)
	var total atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for d, id := range ids {
		dev := mustDial(t, h.mqtt, id)
		var next atomic.Int64
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ts := base + next.Add(1)
					if err := dev.publish(readingTopic(id), reading(id, ts), false); err != nil {
						return // the hub is gone
					}
					mu.Lock()
					acked[d] = append(acked[d], ts)
					mu.Unlock()
					if total.Add(1) == target {
						once.Do(func() { close(enough) })
					}
				}
			}()
		}
	}
	select {
	case <-enough:
	case <-time.After(90 * time.Second):
		t.Fatalf("only %d readings acknowledged", total.Load())
	}
	h.kill()
	wg.Wait()

	h.start()
	h.stop()
	lost := 0
	for d, id := range ids {
		stored := storedTimes(t, h.dir, id)
		for _, ts := range acked[d] {
			if !stored[ts] {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged readings lost to SIGKILL", lost, total.Load())
	}
	t.Logf("SIGKILL after %d acknowledged readings: every one stored after the restart", total.Load())
}

// storedTimes opens the data directory of a stopped hub and returns the
// device times (unix seconds) of id's stored pH readings of gpio 34.
func storedTimes(t *testing.T, dir, id string) map[int64]bool {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	series, err := st.LoadSeries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]bool{}
	sid, ok := series[store.SeriesKey{EspID: id, GPIO: 34, SensorType: "ph"}]
	if !ok {
		return out
	}
	rows, err := st.QueryReadings(ctx, store.RawQuery{Series: []int64{sid}, Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		out[r.TS/1000] = true
	}
	return out
}
