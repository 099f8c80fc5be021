package deviceapi

import (
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// fakeActuators is the actuator views per device.
type fakeActuators map[string][]actuator.View

func (f fakeActuators) ForDevice(espID string) []actuator.View { return f[espID] }

// objectFixture serves the device routes with actuator views.
func objectFixture(t *testing.T, acts fakeActuators, ds ...device.Device) *apitest.Fixture {
	f := apitest.New(t, ds...)
	Register(f.Srv, Deps{
		Devices:   f.Devices,
		Sensors:   f.Sensors,
		Actuators: acts,
		Audit:     f.Audit,
	})
	return f
}

// The device object carries what clients render (docs/api.md §6.2): its
// sensors with the latest reading (numeric raw_value), its actuators with
// the confirmed state, and the last heartbeat's figures.
func TestDeviceObjectCarriesComponents(t *testing.T) {
	d := apitest.Dev("ESP_A1B2C3", device.StatusOnline)
	d.Metadata = map[string]any{
		"last_wifi_rssi": -61.0, // float64, as stored after a restart
		"last_heap_free": int64(187432),
		"last_uptime":    3600.0,
	}
	acts := fakeActuators{"ESP_A1B2C3": {
		{
			GPIO:           5,
			Type:           "pump",
			Name:           "Main pump",
			On:             true,
			ConfirmedState: "on",
			PWMValue:       1,
		},
		{
			GPIO:             18,
			Type:             "pwm",
			ConfirmedState:   "pwm",
			Stale:            true,
			PWMValue:         0.4,
			EmergencyStopped: true,
		},
	}}
	f := objectFixture(t, acts, d, apitest.Dev("ESP_EMPTY1", device.StatusOnline))
	ph, ec := apitest.SensorOn("ESP_A1B2C3", 34, "ph"), apitest.SensorOn("ESP_A1B2C3", 35, "ec")
	ph.Name = "Tank pH"
	f.Sensors.Configs = []sensor.Config{ph, ec}
	processed := 6.19
	read := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	f.Sensors.Values = []sensor.LatestValue{{
		Key: store.SeriesKey{EspID: "ESP_A1B2C3", GPIO: 34, SensorType: "ph"},
		Reading: store.Reading{
			TS:        read.UnixMilli(),
			Raw:       2150,
			Processed: &processed,
			Unit:      "pH",
			Quality:   "good",
		},
	}}

	for _, path := range []string{"/api/v1/esp/devices/ESP_A1B2C3", "/api/v1/esp/devices"} {
		t.Run(path, func(t *testing.T) {
			r := f.Do(t, "GET", path, apitest.ViewerToken, nil)
			b := r.Body
			if items := r.Items("data"); items != nil {
				b = items[0].(map[string]any)
			}
			if b["wifi_rssi"] != -61.0 || b["heap_free"] != 187432.0 || b["uptime"] != 3600.0 ||
				b["sensor_count"] != 2.0 || b["actuator_count"] != 2.0 {
				t.Fatalf("top level: %s", r.Raw)
			}

			sensors := b["sensors"].([]any)
			got := sensors[0].(map[string]any)
			want := map[string]any{
				"gpio":            34.0,
				"sensor_type":     "ph",
				"name":            "Tank pH",
				"unit":            "pH",
				"quality":         "good",
				"raw_value":       2150.0,
				"processed_value": 6.19,
				"last_read":       "2026-01-05T10:00:00.000Z",
			}
			sameFields(t, "sensor with a reading", got, want)
			unread := sensors[1].(map[string]any)
			for _, k := range []string{"raw_value", "processed_value", "unit", "quality", "last_read", "name"} {
				if v, ok := unread[k]; !ok || v != nil {
					t.Errorf("sensor without a reading: %s = %v (present %v), want null", k, v, ok)
				}
			}

			actuators := b["actuators"].([]any)
			sameFields(t, "pump", actuators[0].(map[string]any), map[string]any{
				"gpio":              5.0,
				"actuator_type":     "pump",
				"name":              "Main pump",
				"state":             true,
				"confirmed_state":   "on",
				"stale":             false,
				"pwm_value":         1.0,
				"emergency_stopped": false,
			})
			sameFields(t, "stale latched pwm", actuators[1].(map[string]any), map[string]any{
				"gpio":              18.0,
				"actuator_type":     "pwm",
				"name":              nil,
				"state":             false,
				"confirmed_state":   "pwm",
				"stale":             true,
				"pwm_value":         0.4,
				"emergency_stopped": true,
			})
		})
	}

	// A device without components or heartbeats: empty lists, null figures.
	r := f.Do(t, "GET", "/api/v1/esp/devices/ESP_EMPTY1", apitest.ViewerToken, nil)
	if s, ok := r.Body["sensors"].([]any); !ok || len(s) != 0 {
		t.Fatalf("sensors must be an empty list: %s", r.Raw)
	}
	if a, ok := r.Body["actuators"].([]any); !ok || len(a) != 0 {
		t.Fatalf("actuators must be an empty list: %s", r.Raw)
	}
	for _, k := range []string{"wifi_rssi", "heap_free", "uptime"} {
		if v, ok := r.Body[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
}

// Without an actuator source (Deps.Actuators nil) the list is empty, not null.
func TestDeviceObjectWithoutActuatorSource(t *testing.T) {
	f := newFixture(t, apitest.Dev("ESP_A1B2C3", device.StatusOnline))
	r := f.Do(t, "GET", "/api/v1/esp/devices/ESP_A1B2C3", apitest.ViewerToken, nil)
	if a, ok := r.Body["actuators"].([]any); !ok || len(a) != 0 || r.Body["actuator_count"] != 0.0 {
		t.Fatalf("%s", r.Raw)
	}
}

func sameFields(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s = %v (present %v), want %v", what, k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: fields %v, want exactly %v", what, got, want)
	}
}
