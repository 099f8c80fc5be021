package sim

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// Fractional values are published unchanged, to 2 places
// (docs/domain.md §10.2), in `value`; the wire's raw word is the nearest integer
// (docs/protocol.md §4.1), for bases and overrides alike.
func TestFractionalValuesArePublishedUnchanged(t *testing.T) {
	off, on := false, true
	tests := []struct {
		name     string
		spec     SensorSpec
		override *float64
		raw      int64
		value    float64
	}{
		{"base, raw_mode false", SensorSpec{GPIO: 32, Type: "sht31_temp", Base: 23.57, RawMode: &off}, nil, 24, 23.57},
		{"base, raw_mode true", SensorSpec{GPIO: 32, Type: "ph", Base: 6.19, RawMode: &on}, nil, 6, 6.19},
		{"base to 2 places", SensorSpec{GPIO: 32, Type: "ph", Base: 1.004}, nil, 1, 1},
		{"whole base", SensorSpec{GPIO: 32, Type: "ph", Base: 2048}, nil, 2048, 2048},
		{"override", SensorSpec{GPIO: 32, Type: "ph", Base: 2048}, ptrTo(7.6), 8, 7.6},
		{"negative override", SensorSpec{GPIO: 32, Type: "ds18b20", Base: 0}, ptrTo(-3.25), -3, -3.25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, "none", func(cfg *NodeConfig) { cfg.Sensors = []SensorSpec{tc.spec} })
				if tc.override != nil {
					r.node.SetOverride(tc.spec.GPIO, *tc.override, true)
				} else {
					r.wait(5 * time.Second)
				}

				d := lastReading(t, r)
				if d.Raw != tc.raw || d.Value == nil || *d.Value != tc.value {
					t.Fatalf("raw %d value %v, want %d and %v", d.Raw, d.Value, tc.raw, tc.value)
				}
			})
		})
	}
}

func ptrTo(v float64) *float64 { return &v }

// lastReading is the node's last published reading, as the hub decodes it.
func lastReading(t *testing.T, r *rig) contract.SensorData {
	t.Helper()
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	for i := len(r.net.sent) - 1; i >= 0; i-- {
		p := r.net.sent[i]
		if !strings.HasSuffix(p.topic, "/data") {
			continue
		}
		topic, err := contract.ParseTopic(p.topic)
		if err != nil {
			t.Fatal(err)
		}
		d, err := contract.DecodeSensorData(topic, []byte(p.payload))
		if err != nil {
			t.Fatalf("the hub drops %s: %v", p.payload, err)
		}
		return d
	}
	t.Fatal("no reading published")
	return contract.SensorData{}
}
