package sensor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

const esp = "ESP_A1B2C3"

// Each processing mode of docs/domain.md §2.1 stores the value, unit and quality it
// names; only a successful pi_enhanced result is echoed to the device.
func TestHandleDataModes(t *testing.T) {
	cases := []struct {
		name      string
		config    *Config
		payload   map[string]any
		mode      string
		processed *float64
		unit      string
		quality   string
		echoed    bool
	}{
		{
			name:      "no config: the raw value, the payload's quality",
			payload:   reading("ph", 2048, t0, "unit", "pH", "quality", "good"),
			mode:      "raw",
			processed: ptr(2048.0),
			unit:      "pH",
			quality:   "good",
		},
		{
			name:      "no config, no quality: unknown",
			payload:   reading("ph", 2048, t0),
			mode:      "raw",
			processed: ptr(2048.0),
			quality:   "unknown",
		},
		{
			name:      "device-processed value",
			payload:   reading("ph", 2048, t0, "raw_mode", false, "value", 6.2, "unit", "pH", "quality", "fair"),
			mode:      "local",
			processed: ptr(6.2),
			unit:      "pH",
			quality:   "fair",
		},
		{
			name:      "device-processed without a value: the raw value",
			payload:   reading("ph", 2048, t0, "raw_mode", false),
			mode:      "local",
			processed: ptr(2048.0),
			quality:   "unknown",
		},
		{
			name: "pi_enhanced config: the processor's result",
			config: &Config{
				EspID:      esp,
				GPIO:       34,
				SensorType: "ph",
				Enabled:    true,
			},
			payload:   reading("ph", 2048, t0, "unit", "raw", "quality", "good"),
			mode:      "pi_enhanced",
			processed: ptr(6.47),
			unit:      "pH",
			quality:   "fair",
			echoed:    true,
		},
		{
			name: "pi_enhanced config, processor error: no value, no echo",
			config: &Config{
				EspID:      esp,
				GPIO:       34,
				SensorType: "ph",
				Enabled:    true,
			},
			payload: reading("ph", 4200, t0),
			mode:    "pi_enhanced",
			unit:    "pH",
			quality: "error",
		},
		{
			name: "raw config: the raw value",
			config: &Config{
				EspID:          esp,
				GPIO:           34,
				SensorType:     "ph",
				Enabled:        true,
				ProcessingMode: "raw",
			},
			payload:   reading("ph", 2048, t0, "unit", "raw"),
			mode:      "raw",
			processed: ptr(2048.0),
			unit:      "raw",
			quality:   "unknown",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")
			if c.config != nil {
				f.configure(t, *c.config)
			}
			if err := f.send(esp, 34, c.payload); err != nil {
				t.Fatal(err)
			}

			r := f.sink.last(t)
			if r.Mode != c.mode || r.Unit != c.unit || r.Quality != c.quality {
				t.Errorf("stored %s %q %s, want %s %q %s", r.Mode, r.Unit, r.Quality, c.mode, c.unit, c.quality)
			}
			switch {
			case c.processed == nil && r.Processed != nil:
				t.Errorf("processed %v, want none", *r.Processed)
			case c.processed != nil && (r.Processed == nil || *r.Processed != *c.processed):
				t.Errorf("processed %v, want %v", r.Processed, *c.processed)
			}
			if r.Raw != c.payload["raw"] || r.TimeSource != string(contract.SourceDevice) || r.Source != "production" {
				t.Errorf("raw %v, time source %s, source %s", r.Raw, r.TimeSource, r.Source)
			}

			if got := len(f.pub.sent) == 1; got != c.echoed {
				t.Fatalf("echoed %v (%v), want %v", got, f.pub.sent, c.echoed)
			}
			if c.echoed {
				want := "kaiser/god/esp/" + esp + "/sensor/34/processed"
				if p := f.pub.sent[0]; p.topic != want || !strings.Contains(p.payload, `"processed_value":6.47`) {
					t.Errorf("echo %+v", p)
				}
			}
		})
	}
}

// A pi_enhanced config whose type has no processor (a config stored
// before its processor was dropped) stores quality error, keeping the
// payload's unit.
func TestHandleDataConfigWithoutProcessor(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	doc := `{"id":"c1","esp_device_id":"` + esp + `","gpio":5,"sensor_type":"rain","processing_mode":"pi_enhanced"}`
	f.store.docs["c1"] = store.Doc{ID: "c1", JSON: []byte(doc)}
	if err := f.svc.Load(context.Background()); err != nil {
		t.Fatal(err)
	}

	if err := f.send(esp, 5, reading("rain", 1, t0, "unit", "mm")); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.last(t); r.Mode != "pi_enhanced" || r.Quality != "error" || r.Unit != "mm" || r.Processed != nil {
		t.Fatalf("stored %+v", r)
	}
}

// Readings that must not be stored are dropped with their metric label
// (docs/protocol.md §5.2, docs/domain.md §2.2).
func TestHandleDataDrops(t *testing.T) {
	cases := []struct {
		name    string
		espID   string
		payload map[string]any
		replay  bool
		reason  string
	}{
		{"retained replay", esp, reading("ph", 1, t0), true, contract.ReasonReplay},
		{"unknown device", "ESP_OTHER1", reading("ph", 1, t0), false, contract.ReasonUnknownDevice},
		{"pending device", "ESP_PENDING", reading("ph", 1, t0), false, contract.ReasonNotApproved},
		{"older than a day", esp, reading("ph", 1, t0.Add(-25*time.Hour)), false, contract.ReasonTooOld},
		{"no sensor type", esp, map[string]any{"raw": 1, "ts": t0.Unix()}, false, contract.ReasonMissingField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addDevice(esp, device.StatusOnline, "")
			f.addDevice("ESP_PENDING", device.StatusPending, "")

			err := f.deliver(c.espID, 34, c.payload, c.replay)
			if got := dropReason(err); got != c.reason {
				t.Fatalf("drop %q, want %q", got, c.reason)
			}
			if len(f.sink.readings) != 0 {
				t.Fatalf("stored %d readings", len(f.sink.readings))
			}
		})
	}
}

// A device-timed reading is a duplicate when its series saw the same time
// recently; the other values of a multi-value sensor, other pins and
// hub-timed readings are not.
func TestHandleDataDeduplication(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	send := func(gpio int, p map[string]any) string { return dropReason(f.send(esp, gpio, p)) }

	if got := send(21, reading("sht31_temp", 26000, t0)); got != "" {
		t.Fatalf("first reading: %s", got)
	}
	if got := send(21, reading("sht31_temp", 26001, t0)); got != contract.ReasonDuplicate {
		t.Fatalf("same device time: %q, want duplicate", got)
	}
	if got := send(21, reading("sht31_humidity", 30000, t0)); got != "" {
		t.Fatalf("the other value of the sensor: %s", got)
	}
	if got := send(22, reading("sht31_temp", 26000, t0)); got != "" {
		t.Fatalf("another pin: %s", got)
	}

	// Hub-timed readings received at the same instant get distinct,
	// increasing times.
	for i := 0; i < 3; i++ {
		if got := send(34, reading("ph", 2000, time.Unix(0, 0))); got != "" {
			t.Fatalf("hub-timed reading %d: %s", i, got)
		}
	}
	rs := f.sink.readings[len(f.sink.readings)-3:]
	for i, r := range rs {
		if r.TimeSource != string(contract.SourceHub) || r.TS != t0.UnixMilli()+int64(i) {
			t.Fatalf("hub-timed reading %d: %s at %d", i, r.TimeSource, r.TS-t0.UnixMilli())
		}
	}
}

// Dedup remembers only the last readings of a series: after that many
// newer ones, an old device time is accepted again.
func TestHandleDataDedupMemoryIsBounded(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	for i := 0; i <= recentDeviceTimes; i++ {
		if err := f.send(esp, 34, reading("ph", 2000, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.send(esp, 34, reading("ph", 2000, t0)); err != nil {
		t.Fatalf("a time beyond the remembered ones: %v", err)
	}
	if got := dropReason(f.send(esp, 34, reading("ph", 2000, t0.Add(5*time.Second)))); got != contract.ReasonDuplicate {
		t.Fatalf("a remembered time: %q, want duplicate", got)
	}
}

// time_valid=false means the device clock is not set: the hub's time is used.
func TestHandleDataInvalidDeviceClock(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	if err := f.send(esp, 34, reading("ph", 1, t0.Add(-time.Hour), "time_valid", false)); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.last(t); r.TimeSource != string(contract.SourceHub) || r.TS != t0.UnixMilli() {
		t.Fatalf("stored at %d from %s", r.TS, r.TimeSource)
	}
}

// The reading's source follows docs/domain.md §2.2: test mode, an explicit source,
// then the device's kind.
func TestHandleDataSource(t *testing.T) {
	cases := []struct {
		name, espID, hw string
		extra           []any
		want            string
	}{
		{"production", esp, "ESP32_WROOM", nil, "production"},
		{"test mode", esp, "", []any{"_test_mode", true}, "test"},
		{"explicit source", esp, "", []any{"_source", "Replay"}, "replay"},
		{"mock hardware", esp, "MOCK_ESP32", nil, "mock"},
		{"mock id", "MOCK_7F3A91C2", "", nil, "mock"},
		{"test id", "TEST_01", "", nil, "test"},
		{"simulation id", "SIM_01", "", nil, "simulation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.addDevice(c.espID, device.StatusOnline, c.hw)
			if err := f.send(c.espID, 34, reading("ph", 1, t0, c.extra...)); err != nil {
				t.Fatal(err)
			}
			if got := f.sink.last(t).Source; got != c.want {
				t.Fatalf("source %q, want %q", got, c.want)
			}
		})
	}
}

// A failing store is reported, and the live event is only built for a
// listener.
func TestHandleDataStoreErrorAndEvent(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.sink.err = errors.New("disk full")
	if err := f.send(esp, 34, reading("ph", 1, t0)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("store error: %v", err)
	}

	f.sink.err = nil
	events := f.subscribe(t, "sensor_data")
	if err := f.send(esp, 34, reading("ph", 1, t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	if n := len(events()); n != 1 {
		t.Fatalf("%d sensor_data events, want 1", n)
	}
}

// The latest reading per series is served from memory, stale once older
// than the sensor's timeout (180 s without a config).
func TestLatest(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{
		EspID:          esp,
		GPIO:           4,
		SensorType:     "ds18b20",
		Enabled:        true,
		TimeoutSeconds: 60,
	})
	if err := f.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	if err := f.send(esp, 34, reading("ph", 2000, t0)); err != nil {
		t.Fatal(err)
	}

	f.now = t0.Add(90 * time.Second)
	all := f.svc.Latest("", -1, "")
	if len(all) != 2 || all[0].Key.GPIO != 4 || all[1].Key.GPIO != 34 {
		t.Fatalf("latest %+v", all)
	}
	if !all[0].Stale || all[1].Stale {
		t.Fatalf("after 90 s: ds18b20 (60 s) stale %v, ph (180 s) stale %v", all[0].Stale, all[1].Stale)
	}
	if got := f.svc.Latest(esp, -1, "PH_SENSOR"); len(got) != 1 || got[0].Reading.Raw != 2000 {
		t.Fatalf("by alias: %+v", got)
	}

	if ids := f.svc.SeriesIDs(esp, 4, ""); len(ids) != 1 {
		t.Fatalf("series ids %v", ids)
	} else if k, ok := f.svc.SeriesKeyOf(ids[0]); !ok || k.SensorType != "ds18b20" {
		t.Fatalf("series key %+v %v", k, ok)
	}
	c, _, _ := f.svc.Find(esp, 4, Selector{})
	if r, ok := f.svc.LatestOf(c); !ok || r.Raw != 400 {
		t.Fatalf("latest of config: %+v %v", r, ok)
	}
	if _, ok := f.svc.LatestOf(Config{EspID: esp, GPIO: 5, SensorType: "ph"}); ok {
		t.Fatal("latest of a sensor without readings")
	}
}

// The bus address is part of a reading's identity: it selects the config
// (and so the processing) of one of several sensors on a pin.
func TestHandleDataBusAddress(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "light",
		I2CAddress: ptr(0x23),
	})
	f.configure(t, Config{
		EspID:          esp,
		GPIO:           4,
		SensorType:     "ds18b20",
		OneWireAddress: "28ffaa",
	})

	cases := []struct {
		name    string
		gpio    int
		payload map[string]any
		mode    string
	}{
		{"configured I2C address", 21, reading("light", 523, t0, "i2c_address", 0x23), "pi_enhanced"},
		{"other I2C address", 21, reading("light", 523, t0, "i2c_address", 0x5C), "raw"},
		{"no address", 21, reading("light", 523, t0), "raw"},
		{"OneWire address in another case", 4, reading("ds18b20", 400, t0, "onewire_address", "28fFaA"), "pi_enhanced"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.payload["ts"] = t0.Unix() + int64(i) // not a duplicate of the previous case
			if err := f.send(esp, c.gpio, c.payload); err != nil {
				t.Fatal(err)
			}
			if r := f.sink.last(t); r.Mode != c.mode {
				t.Fatalf("mode %s, want %s", r.Mode, c.mode)
			}
		})
	}
}

// A late reading (older device time, not a duplicate) is stored but does
// not replace the newer latest value.
func TestHandleDataLateReadingKeepsLatest(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	if err := f.send(esp, 34, reading("ph", 2000, t0)); err != nil {
		t.Fatal(err)
	}
	if err := f.send(esp, 34, reading("ph", 1000, t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if n := len(f.sink.readings); n != 2 {
		t.Fatalf("%d readings stored", n)
	}
	if got := f.svc.Latest(esp, 34, ""); len(got) != 1 || got[0].Reading.Raw != 2000 {
		t.Fatalf("latest %+v", got)
	}
}

// listeningPublisher knows who subscribes, as the embedded broker does.
type listeningPublisher struct {
	memPublisher
	listened map[string]bool
	asked    []string
}

func (p *listeningPublisher) HasSubscribers(topic string) bool {
	p.asked = append(p.asked, topic)
	return p.listened[topic]
}

// The processed echo is built only when its topic has a subscriber
// (docs/protocol.md §3.2.11: no firmware subscribes to it).
func TestEchoOnlyWhenSomeoneListens(t *testing.T) {
	const esp = "ESP_ECHO01"
	topic := "kaiser/god/esp/" + esp + "/sensor/34/processed"
	for _, listened := range []bool{false, true} {
		f := newFixture(t)
		pub := &listeningPublisher{listened: map[string]bool{topic: listened}}
		f.svc.bus = pub
		f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")
		f.configure(t, Config{EspID: esp, GPIO: 34, SensorType: "ph", Enabled: true})

		if err := f.send(esp, 34, reading("ph", 2048, t0)); err != nil {
			t.Fatal(err)
		}

		if len(pub.asked) != 1 || pub.asked[0] != topic {
			t.Fatalf("asked about %v, want %s", pub.asked, topic)
		}
		if got := len(pub.sent) == 1; got != listened {
			t.Fatalf("listened %v: echoed %v (%v)", listened, got, pub.sent)
		}
		if f.sink.last(t).Processed == nil {
			t.Fatal("the reading was not processed")
		}
	}
}
