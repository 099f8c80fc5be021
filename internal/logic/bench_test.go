package logic

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/sensor"
)

// benchSensor is one sensor of the benchmark's greenhouse.
type benchSensor struct {
	esp  string
	gpio int
}

// benchRules loads 1,000 enabled rules into w: 950 on sensors of their
// own (one in five a hysteresis band, the rest thresholds) and 50 on one
// shared sensor, each rule driving an actuator of its own (those of the shared sensor's
// rules on other devices, a device having 40 pins). It returns
// the distinct sensors and the shared one.
func benchRules(b *testing.B, w *world) (all []benchSensor, shared benchSensor) {
	b.Helper()
	const own, onShared = 950, 50
	shared = benchSensor{esp: "ESP_B095", gpio: 1}
	w.acts.mu.Lock()
	w.sensors.mu.Lock()
	w.devices.mu.Lock()
	addSensor := func(s benchSensor) {
		w.sensors.configs = append(w.sensors.configs, sensor.Config{EspID: s.esp, GPIO: s.gpio, SensorType: "ds18b20"})
		w.devices.status[s.esp] = device.StatusOnline
	}
	addActuator := func(esp string, gpio int) {
		w.acts.configs[key(esp, gpio)] = actuator.Config{EspID: esp, GPIO: gpio, Type: "relay", Enabled: true, MaxRuntimeSeconds: 3600}
		w.acts.states[key(esp, gpio)] = actuator.StateView{State: "off"}
	}
	for i := range own {
		s := benchSensor{esp: fmt.Sprintf("ESP_B%03d", i/10), gpio: 1 + i%10}
		addSensor(s)
		addActuator(s.esp, 11+i%10)
		all = append(all, s)
	}
	addSensor(shared)
	all = append(all, shared)
	for i := range onShared {
		esp := fmt.Sprintf("ESP_C%03d", i)
		addActuator(esp, 25)
		w.devices.status[esp] = device.StatusOnline
	}
	w.devices.mu.Unlock()
	w.sensors.mu.Unlock()
	w.acts.mu.Unlock()

	for i := range own {
		s := all[i]
		w.rule(benchDoc(i, s, s.esp, 11+i%10, i%5 == 0))
	}
	for i := range onShared {
		w.rule(benchDoc(own+i, shared, fmt.Sprintf("ESP_C%03d", i), 25, i%5 == 0))
	}
	w.drain([]string{controlWorker})
	return all, shared
}

func benchDoc(i int, s benchSensor, esp string, gpio int, hysteresis bool) string {
	cond := fmt.Sprintf(`{"type":"sensor","esp_id":%q,"gpio":%d,"sensor_type":"ds18b20","operator":">","value":30}`,
		s.esp, s.gpio)
	if hysteresis {
		cond = fmt.Sprintf(`{"type":"hysteresis","esp_id":%q,"gpio":%d,"sensor_type":"ds18b20","activate_below":18,"deactivate_above":21}`,
			s.esp, s.gpio)
	}
	return fmt.Sprintf(`{"name":"bench %d","cooldown_seconds":300,"conditions":[%s],
		"actions":[{"type":"actuator","esp_id":%q,"gpio":%d,"command":"ON","duration_seconds":600}]}`,
		i, cond, esp, gpio)
}

// drain returns once every job queued so far on the workers of keys has run.
func (w *world) drain(keys []string) {
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		w.eng.enqueue(k, func(context.Context) { wg.Done() }, true)
	}
	wg.Wait()
}

// BenchmarkReadingWith1000Rules is the per-reading cost of the engine
// with 1,000 enabled rules (docs/domain.md §6.6): the trigger lookup of an
// accepted reading, the hand-off to its device's worker, the evaluation
// and the gates up to the decision, over a real SQLite store and a fake
// actuator side. One reading in ten is above the thresholds' 30 °C, so
// each threshold rule fires once and then meets its cooldown.
func BenchmarkReadingWith1000Rules(b *testing.B) {
	w := newWorld(b, Options{})
	defer w.close()
	all, shared := benchRules(b, w)
	cases := []struct {
		name    string
		sensors []benchSensor
	}{
		{"round_robin_951_sensors", all},
		{"shared_sensor_50_rules", []benchSensor{shared}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			benchReadings(b, w, c.sensors)
		})
	}
	if n := testutil.ToFloat64(w.eng.metrics.dropped); n != 0 {
		b.Fatalf("%v triggers dropped: the numbers do not cover every reading", n)
	}
}

// benchReadings hands b.N readings round-robin over sensors to the engine
// as its subscription would, waiting for the workers every 200 readings
// (below a worker's queue of 256, so none is dropped).
func benchReadings(b *testing.B, w *world, sensors []benchSensor) {
	const barrier = 200
	touched := map[string]bool{}
	flush := func() {
		keys := make([]string, 0, len(touched))
		for k := range touched {
			keys = append(keys, k)
		}
		w.drain(keys)
		clear(touched)
	}
	now := time.Now().Unix()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		s := sensors[i%len(sensors)]
		v := 20.0
		if (i/len(sensors))%10 == 9 {
			v = 31
		}
		w.eng.onReading(event.SensorData{
			EspID:          s.esp,
			GPIO:           s.gpio,
			SensorType:     "ds18b20",
			Value:          v,
			ProcessedValue: &v,
			Quality:        "good",
			Timestamp:      now,
		})
		touched[s.esp] = true
		i++
		if i%barrier == 0 {
			flush()
		}
	}
	flush()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/reading")
}
