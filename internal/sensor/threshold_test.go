package sensor

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
)

// Severity bounds are exclusive (a value equal to a bound is inside), and
// custom thresholds in alert_config win over the config's fields when any
// is set (docs/domain.md §3.1–3.2).
func TestEffectiveBandsSeverity(t *testing.T) {
	fields := Config{
		ThresholdMin: ptr(0.0),
		ThresholdMax: ptr(40.0),
		WarningMin:   ptr(10.0),
		WarningMax:   ptr(30.0),
	}
	custom := fields
	custom.AlertConfig = map[string]any{"custom_thresholds": map[string]any{
		"critical_high": 50.0,
		"warning_low":   5.0,
	}}
	emptyCustom := fields
	emptyCustom.AlertConfig = map[string]any{"custom_thresholds": map[string]any{"note": "x"}}

	cases := []struct {
		name string
		c    Config
		v    float64
		want string
	}{
		{"inside", fields, 20, ""},
		{"on the warning bound", fields, 30, ""},
		{"above warning", fields, 30.5, "warning"},
		{"below warning", fields, 9, "warning"},
		{"on the critical bound", fields, 40, "warning"},
		{"above critical", fields, 41, "critical"},
		{"zero is a bound", fields, -0.1, "critical"},
		{"custom replaces all fields", custom, 45, ""},
		{"custom critical", custom, 51, "critical"},
		{"custom warning", custom, 4, "warning"},
		{"custom without values: the fields", emptyCustom, 41, "critical"},
		{"no bands", Config{}, 1e9, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := EffectiveBands(&c.c).Severity(c.v); got != c.want {
				t.Fatalf("severity of %v: %q, want %q", c.v, got, c.want)
			}
		})
	}
}

// A usable reading outside its bands raises the threshold alert with the
// config's severity override and suppression; one inside clears it; an
// unusable one is not evaluated (docs/domain.md §3.2–3.5).
func TestThresholdAlerts(t *testing.T) {
	past := t0.Add(-time.Hour).Format(time.RFC3339)
	future := t0.Add(time.Hour).Format(time.RFC3339)
	cases := []struct {
		name       string
		alertCfg   map[string]any
		devAlert   map[string]any
		raw        float64
		severity   string // "" = cleared
		suppressed bool
	}{
		{name: "inside clears", raw: 400, severity: ""},
		{name: "critical", raw: 800, severity: "critical"},
		{name: "warning", raw: 520, severity: "warning"},
		{
			name:     "severity override",
			alertCfg: map[string]any{"severity_override": "info"},
			raw:      800,
			severity: "info",
		},
		{
			name:       "alerts disabled",
			alertCfg:   map[string]any{"alerts_enabled": false},
			raw:        800,
			severity:   "critical",
			suppressed: true,
		},
		{
			name:       "suppressed until later",
			alertCfg:   map[string]any{"alerts_enabled": false, "suppression_until": future},
			raw:        800,
			severity:   "critical",
			suppressed: true,
		},
		{
			name:     "suppression over",
			alertCfg: map[string]any{"alerts_enabled": false, "suppression_until": past},
			raw:      800,
			severity: "critical",
		},
		{
			name:       "device suppression propagates",
			devAlert:   map[string]any{"alerts_enabled": false},
			raw:        800,
			severity:   "critical",
			suppressed: true,
		},
		{
			name:     "device suppression not propagated",
			devAlert: map[string]any{"alerts_enabled": false, "propagate_to_children": false},
			raw:      800,
			severity: "critical",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addDevice(esp, device.StatusOnline, "")
			if c.devAlert != nil {
				d := f.devices.byID[esp]
				d.Metadata = map[string]any{"alert_config": c.devAlert}
				f.devices.byID[esp] = d
			}
			// ds18b20 raw × 0.0625 °C: 400 → 25, 520 → 32.5, 800 → 50.
			f.configure(t, Config{
				EspID:        esp,
				GPIO:         4,
				SensorType:   "ds18b20",
				Name:         "Tank",
				Enabled:      true,
				ThresholdMax: ptr(40.0),
				WarningMax:   ptr(30.0),
				AlertConfig:  c.alertCfg,
			})
			if err := f.send(esp, 4, reading("ds18b20", c.raw, t0)); err != nil {
				t.Fatal(err)
			}

			const key = "threshold_" + esp + "_4_ds18b20"
			if c.severity == "" {
				if len(f.alerts.raised) != 0 || len(f.alerts.cleared) != 1 || f.alerts.cleared[0] != key {
					t.Fatalf("raised %+v, cleared %v", f.alerts.raised, f.alerts.cleared)
				}
				return
			}
			if len(f.alerts.raised) != 1 {
				t.Fatalf("raised %d alerts", len(f.alerts.raised))
			}
			a := f.alerts.raised[0]
			if a.Key != key || a.Severity != c.severity || a.Suppressed != c.suppressed ||
				a.Category != "data_quality" {
				t.Fatalf("alert %+v", a)
			}
			if a.Metadata["value"] != 50.0 && a.Metadata["value"] != 32.5 {
				t.Fatalf("alert value %v", a.Metadata["value"])
			}
		})
	}
}

// A suspect reading (the DS18B20 power-on 85 °C) is not held against the
// thresholds, and a sensor without a config has none.
func TestThresholdsSkipUnusableReadings(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{
		EspID:        esp,
		GPIO:         4,
		SensorType:   "ds18b20",
		Enabled:      true,
		ThresholdMax: ptr(40.0),
	})
	if err := f.send(esp, 4, reading("ds18b20", 1360, t0)); err != nil {
		t.Fatal(err)
	}
	if err := f.send(esp, 5, reading("ds18b20", 1200, t0)); err != nil {
		t.Fatal(err)
	}
	if len(f.alerts.raised)+len(f.alerts.cleared) != 0 {
		t.Fatalf("raised %+v, cleared %v", f.alerts.raised, f.alerts.cleared)
	}
}

// Stale detection (docs/domain.md §3.6) on an injected clock: a continuous sensor of
// an online device without a reading for longer than its timeout is marked
// once, with an event and a warning alert; its next reading recovers it.
func TestCheckStale(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addDevice(esp, device.StatusOnline, "")
	f.addDevice("ESP_OFFLINE", device.StatusOffline, "")
	f.configure(t, Config{
		EspID:          esp,
		GPIO:           4,
		SensorType:     "ds18b20",
		Enabled:        true,
		TimeoutSeconds: 60,
	})
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       34,
		SensorType: "ph",
		Enabled:    true,
	}) // on demand
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       35,
		SensorType: "moisture",
		Enabled:    false,
	})
	f.configure(t, Config{
		EspID:      "ESP_OFFLINE",
		GPIO:       4,
		SensorType: "ds18b20",
		Enabled:    true,
	})
	health := f.subscribe(t, "sensor_health")

	if err := f.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	f.now = t0.Add(60 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(health()); n != 0 || len(f.alerts.raised) != 0 {
		t.Fatalf("at the timeout: %d events, %d alerts", n, len(f.alerts.raised))
	}

	f.now = t0.Add(61 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(health()); n != 1 {
		t.Fatalf("past the timeout: %d sensor_health events, want 1", n)
	}
	const key = "stale_" + esp + "_4_ds18b20"
	if len(f.alerts.raised) != 1 || f.alerts.raised[0].Key != key || f.alerts.raised[0].Severity != "warning" ||
		f.alerts.raised[0].Metadata["reason"] != "timeout_exceeded" {
		t.Fatalf("alerts %+v", f.alerts.raised)
	}
	if latest := f.svc.Latest(esp, 4, ""); len(latest) != 1 || !latest[0].Stale {
		t.Fatalf("latest %+v", latest)
	}

	f.now = t0.Add(10 * time.Minute)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(health()); n != 0 || len(f.alerts.raised) != 1 {
		t.Fatalf("already stale: %d events, %d alerts", n, len(f.alerts.raised))
	}

	before := len(f.alerts.cleared)
	if err := f.send(esp, 4, reading("ds18b20", 400, f.now)); err != nil {
		t.Fatal(err)
	}
	if n := len(health()); n != 1 {
		t.Fatalf("recovery: %d sensor_health events, want 1", n)
	}
	if !slices.Contains(f.alerts.cleared[before:], key) {
		t.Fatalf("cleared %v, want %s", f.alerts.cleared[before:], key)
	}
}

// A sensor that never reported is stale "no_data" once its timeout has
// passed since it was configured.
func TestCheckStaleWithoutReadings(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       4,
		SensorType: "ds18b20",
		Enabled:    true,
	}) // 180 s default

	f.now = t0.Add(180 * time.Second)
	if err := f.svc.CheckStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.alerts.raised) != 0 {
		t.Fatalf("at the timeout: %+v", f.alerts.raised)
	}
	f.now = t0.Add(181 * time.Second)
	if err := f.svc.CheckStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.alerts.raised) != 1 || f.alerts.raised[0].Metadata["reason"] != "no_data" {
		t.Fatalf("alerts %+v", f.alerts.raised)
	}
}

// Of two light sensors on the I2C bus at different addresses, the one
// that falls silent is named: its sensor_health events carry its address
// and are their own state on the live feed, and its stale alert names the
// address; the one still reporting stays fresh.
func TestStaleSensorOnASharedBusIsNamed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addDevice(esp, device.StatusOnline, "")
	for _, addr := range []int{0x23, 0x5C} {
		f.configure(t, Config{
			EspID:          esp,
			GPIO:           21,
			SensorType:     "light",
			I2CAddress:     ptr(addr),
			Enabled:        true,
			TimeoutSeconds: 60,
		})
	}
	health := f.subscribe(t, "sensor_health")

	for _, addr := range []int{0x23, 0x5C} {
		if err := f.send(esp, 21, reading("light", 523, t0, "i2c_address", addr)); err != nil {
			t.Fatal(err)
		}
	}
	f.now = t0.Add(50 * time.Second)
	if err := f.send(esp, 21, reading("light", 523, f.now, "i2c_address", 0x23)); err != nil {
		t.Fatal(err)
	}
	f.now = t0.Add(61 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}

	events := health()
	if len(events) != 1 {
		t.Fatalf("%d sensor_health events, want 1", len(events))
	}
	h := events[0].Data.(event.SensorHealth)
	if h.Status != "stale" || h.I2CAddress == nil || *h.I2CAddress != 0x5C || h.OneWireAddress != "" {
		t.Fatalf("sensor_health %+v, want 0x5C stale", h)
	}
	other := h
	other.I2CAddress = ptr(0x23)
	if h.Subject() == other.Subject() {
		t.Fatalf("the sensors of one bus share the subject %q", h.Subject())
	}
	if len(f.alerts.raised) != 1 {
		t.Fatalf("alerts %+v", f.alerts.raised)
	}
	a := f.alerts.raised[0]
	if a.Key != "stale_"+esp+"_21_light_i2c:92" || a.Metadata["address"] != "i2c:92" || !strings.Contains(a.Body, "light at I2C 0x5C") {
		t.Fatalf("stale alert %+v", a)
	}

	if err := f.send(esp, 21, reading("light", 523, f.now, "i2c_address", 0x5C)); err != nil {
		t.Fatal(err)
	}
	events = health()
	if len(events) != 1 {
		t.Fatalf("recovery: %d events", len(events))
	}
	if r := events[0].Data.(event.SensorHealth); r.Status != "ok" || r.I2CAddress == nil || *r.I2CAddress != 0x5C {
		t.Fatalf("recovery event %+v", r)
	}
}
