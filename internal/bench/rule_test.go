package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/hub"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// BenchmarkRuleTriggerToCommand is issue 10's latency bound (trigger →
// command p99 ≤ 10 ms at 1,000 readings/s of background): an in-process
// hub, a baseline-firmware node with a pump, a trigger device whose pH
// reading crosses a rule's threshold, and 20 devices × 5 sensors
// publishing 1,000 readings/s. Each trigger is measured from the reading's
// publish to the rule's command arriving on the node's topic; two rules
// switch the pump ON above the high threshold and OFF below the low one,
// and the triggers alternate, one every 100 ms (under the device bucket
// of docs/domain.md §6.9).
func BenchmarkRuleTriggerToCommand(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, stop, err := tempHub(ctx, hub.Config{BcryptCost: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	token, err := operatorToken(ctx, h)
	if err != nil {
		b.Fatal(err)
	}
	bgIDs, err := Provision(ctx, h, 20, 5, "BGL_")
	if err != nil {
		b.Fatal(err)
	}
	trg, err := Provision(ctx, h, 1, 1, "TRG_")
	if err != nil {
		b.Fatal(err)
	}
	ids, err := Provision(ctx, h, 1, 0, "CMD_")
	if err != nil {
		b.Fatal(err)
	}
	received := newTimings()
	nodesCtx, stopNodes := context.WithCancel(ctx)
	node, err := startPumpNode(nodesCtx, h, token, ids[0], received)
	defer func() {
		stopNodes()
		if node != nil {
			<-node.Stopped()
		}
	}()
	if err != nil {
		b.Fatal(err)
	}
	w, err := sim.DialWire(h.MQTTAddr(), sim.WireOptions{ClientID: trg[0]})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Kill()
	gpio := sensorPin(0)
	topic := fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", trg[0], gpio)
	var ts int64 = time.Now().Unix() - 80000
	publish := func(raw int) {
		ts++
		if err := w.Publish(topic, reading(nil, trg[0], gpio, raw, ts), true); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}

	// The processed values of two raw readings set the rules' thresholds.
	// (A higher ADC count is a lower pH.)
	const onRaw, offRaw = 1000, 3000
	high, low := probe(b, h, publish, trg[0], onRaw), probe(b, h, publish, trg[0], offRaw)
	if high <= low {
		b.Fatalf("raw %d gives pH %.2f, not above raw %d's %.2f", onRaw, high, offRaw, low)
	}
	mid := (high + low) / 2
	for _, doc := range []string{
		ruleDoc("Pump on", trg[0], gpio, ">", mid+(high-mid)/2, ids[0], "ON"),
		ruleDoc("Pump off", trg[0], gpio, "<", mid-(mid-low)/2, ids[0], "OFF"),
	} {
		if _, _, err := h.Rules.Create(ctx, []byte(doc)); err != nil {
			b.Fatalf("rule: %v", err)
		}
	}
	received.every = make(chan time.Time, 16)

	bg := newHubLoad(h, bgIDs, 5)
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() { loadDone <- bg.phase(lctx, 1000, bgWindow) }()
	defer func() {
		stopLoad()
		<-loadDone
	}()
	if err := await(ctx, bg.allConnected); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second) // the background reaches its pace

	var lat []time.Duration
	on := false
	h0, t0 := bg.handled(), time.Now()
	b.ResetTimer()
	for b.Loop() {
		on = !on
		raw := offRaw
		if on {
			raw = onRaw
		}
		start := time.Now()
		publish(raw)
		select {
		case at := <-received.every:
			lat = append(lat, at.Sub(start))
		case <-time.After(5 * time.Second):
			b.Fatalf("no command within 5 s of trigger %d", len(lat)+1)
		}
		time.Sleep(time.Until(start.Add(100 * time.Millisecond)))
	}
	b.StopTimer()
	bgPS := float64(bg.handled()-h0) / time.Since(t0).Seconds()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_ms")
	b.ReportMetric(bgPS, "background_readings/s")
}

// probe publishes a raw reading and returns its processed value.
func probe(b *testing.B, h *hub.Hub, publish func(raw int), espID string, raw int) float64 {
	b.Helper()
	sub := h.Events.Subscribe(64, event.TypeSensorData)
	defer h.Events.Unsubscribe(sub)
	publish(raw)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if d, ok := e.Data.(event.SensorData); ok && d.EspID == espID && d.ProcessedValue != nil {
				if d.Quality == "error" || d.Quality == "suspect" {
					b.Fatalf("raw %d is %s quality", raw, d.Quality)
				}
				return *d.ProcessedValue
			}
		case <-timeout:
			b.Fatalf("raw %d never stored", raw)
		}
	}
}

func ruleDoc(name, espID string, gpio int, op string, v float64, target, command string) string {
	return fmt.Sprintf(`{"name":%q,"cooldown_seconds":0,
		"conditions":[{"type":"sensor","esp_id":%q,"gpio":%d,"sensor_type":"ph","operator":%q,"value":%g}],
		"actions":[{"type":"actuator","esp_id":%q,"gpio":%d,"command":%q,"duration_seconds":20}]}`,
		name, espID, gpio, op, v, target, pumpGPIO, command)
}
