package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/contract"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func hbTopic(id string) string   { return "kaiser/god/esp/" + id + "/system/heartbeat" }
func dataTopic(id string) string { return "kaiser/god/esp/" + id + "/sensor/34/data" }

func newTestDispatcher(t *testing.T, cfg Config) (*Dispatcher, *Metrics) {
	t.Helper()
	var d *Dispatcher
	m := NewMetrics(prometheus.NewRegistry(), func() float64 { return float64(d.Pending()) })
	d = New(cfg, m, nil)
	return d, m
}

func stop(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPerDeviceOrderAcrossWorkers(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 4, QueueCapacity: 64})
	var mu sync.Mutex
	seen := map[string][]int{}
	d.Handle(contract.KindHeartbeat, func(_ context.Context, m Message) error {
		n, _ := strconv.Atoi(string(m.Payload))
		mu.Lock()
		seen[m.Topic.EspID] = append(seen[m.Topic.EspID], n)
		mu.Unlock()
		return nil
	})
	d.Start()
	const devices, perDevice = 50, 200
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("ESP_%06X", i)
			for n := 0; n < perDevice; n++ {
				d.Submit(hbTopic(id), []byte(strconv.Itoa(n)), false, false)
			}
		}(i)
	}
	wg.Wait()
	stop(t, d)
	if len(seen) != devices {
		t.Fatalf("devices seen %d", len(seen))
	}
	for id, got := range seen {
		if len(got) != perDevice {
			t.Fatalf("%s: %d messages, want %d", id, len(got), perDevice)
		}
		for i, n := range got {
			if n != i {
				t.Fatalf("%s: message %d out of order (got %d)", id, i, n)
			}
		}
		if c := d.DeviceCounters(id); c.Received != perDevice || c.Processed != perDevice {
			t.Fatalf("%s counters %+v", id, c)
		}
	}
}

// A device whose handler blocks (even ignoring its deadline) or panics must
// not delay other devices.
func TestStuckAndPanickingDevicesDoNotDelayOthers(t *testing.T) {
	d, m := newTestDispatcher(t, Config{Workers: 2, HandlerTimeout: 200 * time.Millisecond})
	release := make(chan struct{})
	stuckEntered := make(chan struct{}, 1)
	otherDone := make(chan string, 100)
	d.Handle(contract.KindHeartbeat, func(ctx context.Context, m Message) error {
		switch m.Topic.EspID {
		case "STUCK":
			stuckEntered <- struct{}{}
			<-release // ignores ctx on purpose
			return nil
		case "HONEST":
			<-ctx.Done() // blocks until the deadline cancels it
			return ctx.Err()
		case "PANIC":
			panic("boom")
		}
		otherDone <- m.Topic.EspID
		return nil
	})
	d.Start()
	d.Submit(hbTopic("STUCK"), []byte("1"), false, false)
	d.Submit(hbTopic("STUCK"), []byte("2"), false, false) // queued behind the stuck one
	<-stuckEntered
	d.Submit(hbTopic("HONEST"), []byte("1"), false, false)
	d.Submit(hbTopic("PANIC"), []byte("1"), false, false)
	for i := 0; i < 20; i++ {
		d.Submit(hbTopic(fmt.Sprintf("OK%d", i)), []byte("1"), false, false)
	}
	// Every healthy device completes while STUCK is still blocked and HONEST
	// occupies the other worker until its deadline.
	deadline := time.After(5 * time.Second)
	for got := 0; got < 20; got++ {
		select {
		case <-otherDone:
		case <-deadline:
			t.Fatalf("healthy devices delayed: %d of 20 done", got)
		}
	}
	select {
	case <-stuckEntered:
		t.Fatal("second STUCK message ran before the first finished: order broken")
	default:
	}
	if c := d.DeviceCounters("PANIC"); c.Dropped[contract.ReasonHandlerPanic] != 1 {
		t.Fatalf("panic not counted: %+v", c)
	}
	waitFor(t, func() bool { return d.DeviceCounters("HONEST").Dropped[contract.ReasonHandlerTimeout] == 1 })
	close(release)
	<-stuckEntered // the second STUCK message runs after the first returned
	stop(t, d)
	if got := testCount(m.Dropped.WithLabelValues("heartbeat", contract.ReasonHandlerPanic)); got != 1 {
		t.Fatalf("panic metric %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOverflowPolicies(t *testing.T) {
	d, _ := newTestDispatcher(t, Config{Workers: 1, QueueCapacity: 4, BlockingWait: 50 * time.Millisecond})
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []string
	handler := func(_ context.Context, m Message) error {
		<-gate
		mu.Lock()
		got = append(got, string(m.Payload))
		mu.Unlock()
		return nil
	}
	d.Handle(contract.KindSensorData, handler)
	d.Handle(contract.KindHeartbeat, handler)
	d.Start()
	// One message in flight (blocked on gate) plus a full queue of 4.
	for i := 0; i < 10; i++ {
		d.Submit(dataTopic("TEL"), []byte("s"+strconv.Itoa(i)), false, false)
	}
	for i := 0; i < 6; i++ {
		d.Submit(hbTopic("HB"), []byte("h"+strconv.Itoa(i)), false, false)
	}
	close(gate)
	stop(t, d)
	tel := d.DeviceCounters("TEL")
	hb := d.DeviceCounters("HB")
	// Telemetry: newest kept, oldest dropped. Heartbeats: new ones dropped after the wait.
	if tel.Dropped[contract.ReasonQueueOverflow] == 0 || tel.Processed+tel.Dropped[contract.ReasonQueueOverflow] != 10 {
		t.Fatalf("telemetry counters %+v", tel)
	}
	if hb.Dropped[contract.ReasonQueueOverflow] == 0 || hb.Processed+hb.Dropped[contract.ReasonQueueOverflow] != 6 {
		t.Fatalf("heartbeat counters %+v", hb)
	}
	mu.Lock()
	defer mu.Unlock()
	last := ""
	for _, s := range got {
		if s[0] == 's' {
			last = s
		}
	}
	if last != "s9" {
		t.Fatalf("newest telemetry must survive drop-oldest, got %v", got)
	}
}

func TestRoutingDrops(t *testing.T) {
	d, m := newTestDispatcher(t, Config{})
	d.Handle(contract.KindHeartbeat, func(context.Context, Message) error {
		return Drop(contract.ReasonNotApproved, "pending")
	})
	d.Start()
	d.Submit("kaiser/god/esp/E1/config", []byte("{}"), false, false)
	d.Submit("kaiser/god/esp/E1/system/heartbeat", make([]byte, 4097), false, false)
	d.Submit("kaiser/god/esp/E1/system/heartbeat", nil, true, false)
	d.Submit("kaiser/god/esp/E1/system/heartbeat", []byte("{}"), false, false)
	stop(t, d)
	c := d.DeviceCounters("E1")
	if c.Dropped[contract.ReasonOversize] != 1 ||
		c.Dropped[contract.ReasonEmpty] != 1 ||
		c.Dropped[contract.ReasonNotApproved] != 1 {
		t.Fatalf("counters %+v", c)
	}
	if testCount(m.Dropped.WithLabelValues("", contract.ReasonUnknownTopic)) != 1 {
		t.Fatal("unknown_topic not counted")
	}
}

func testCount(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// A drop's log line stays short whatever the topic and payload: the topic,
// the error text and the payload come from the network.
func TestDropLogLineIsBounded(t *testing.T) {
	var buf syncBuffer
	d := New(Config{}, nil, slog.New(slog.NewJSONHandler(&buf, nil)))
	d.Start()
	long := "kaiser/god/esp/E1/" + strings.Repeat("t", 20000)
	d.Submit(long, []byte(strings.Repeat("p", 4000)), false, false)
	stop(t, d)
	line := buf.String()
	if !strings.Contains(line, "message dropped") || len(line) > 1024 {
		t.Fatalf("drop line of %d bytes: %.300s", len(line), line)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
