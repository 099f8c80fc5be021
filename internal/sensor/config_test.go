package sensor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kaiserhub/kaiser/internal/device"
)

// GPIO rules per board (docs/domain.md §8.2): system pins are refused with 400,
// a pin held by another sensor with 409, ADC2 only warns.
func TestCheckPin(t *testing.T) {
	ds := func(gpio int) *Config { return &Config{ID: "o", GPIO: gpio, SensorType: "ds18b20"} }
	cases := []struct {
		name     string
		board    Board
		c        Config
		others   []*Config
		conflict *bool // nil: accepted
		warning  bool
	}{
		{name: "free ADC1 pin", board: WROOM, c: Config{GPIO: 34, SensorType: "ph"}},
		{
			name:     "out of range",
			board:    WROOM,
			c:        Config{GPIO: 40, SensorType: "ph"},
			conflict: ptr(false),
		},
		{
			name:     "negative",
			board:    WROOM,
			c:        Config{GPIO: -1, SensorType: "ph"},
			conflict: ptr(false),
		},
		{
			name:     "not bonded",
			board:    WROOM,
			c:        Config{GPIO: 24, SensorType: "flow"},
			conflict: ptr(false),
		},
		{
			name:     "reserved",
			board:    WROOM,
			c:        Config{GPIO: 6, SensorType: "flow"},
			conflict: ptr(false),
		},
		{
			name:     "input-only OneWire",
			board:    WROOM,
			c:        Config{GPIO: 35, SensorType: "ds18b20"},
			conflict: ptr(false),
		},
		{
			name:     "I2C pin for analog",
			board:    WROOM,
			c:        Config{GPIO: 21, SensorType: "ph"},
			conflict: ptr(false),
		},
		{name: "I2C pin for I2C", board: WROOM, c: Config{GPIO: 21, SensorType: "sht31_temp"}},
		{
			name:     "analog on a digital pin",
			board:    WROOM,
			c:        Config{GPIO: 16, SensorType: "moisture"},
			conflict: ptr(false),
		},
		{
			name:    "analog on ADC2 warns",
			board:   WROOM,
			c:       Config{GPIO: 25, SensorType: "moisture"},
			warning: true,
		},
		{
			name:     "XIAO reserved",
			board:    XIAO,
			c:        Config{GPIO: 18, SensorType: "flow"},
			conflict: ptr(false),
		},
		{
			name:     "XIAO range",
			board:    XIAO,
			c:        Config{GPIO: 22, SensorType: "flow"},
			conflict: ptr(false),
		},
		{
			name:     "pin held by another sensor",
			board:    WROOM,
			c:        Config{GPIO: 4, SensorType: "flow"},
			others:   []*Config{ds(4)},
			conflict: ptr(true),
		},
		{
			name:   "another pin",
			board:  WROOM,
			c:      Config{GPIO: 5, SensorType: "flow"},
			others: []*Config{ds(4)},
		},
		{
			name:   "I2C sensors share the bus",
			board:  WROOM,
			c:      Config{GPIO: 21, SensorType: "light"},
			others: []*Config{{ID: "o", GPIO: 21, SensorType: "sht31_temp"}},
		},
		{
			name:   "values of one sensor share its pin",
			board:  WROOM,
			c:      Config{GPIO: 21, SensorType: "sht31_humidity"},
			others: []*Config{{ID: "o", GPIO: 21, SensorType: "sht31_temp"}},
		},
		{
			name:     "the same I2C sensor twice",
			board:    WROOM,
			c:        Config{GPIO: 21, SensorType: "light"},
			others:   []*Config{{ID: "o", GPIO: 21, SensorType: "bh1750"}},
			conflict: ptr(true),
		},
		{
			name:   "itself",
			board:  WROOM,
			c:      Config{ID: "o", GPIO: 4, SensorType: "flow"},
			others: []*Config{ds(4)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			warning, err := CheckPin(c.board, &c.c, c.others)
			var pe *PinError
			switch {
			case c.conflict == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.conflict != nil && !errors.As(err, &pe):
				t.Fatalf("accepted (%v), want a pin error", err)
			case c.conflict != nil && pe.Conflict != *c.conflict:
				t.Fatalf("conflict %v, want %v: %v", pe.Conflict, *c.conflict, pe)
			}
			if (warning != "") != c.warning {
				t.Fatalf("warning %q", warning)
			}
		})
	}
}

// Upsert keeps one config per identity, replaces the single non-bus sensor
// of a pin whatever its type, keeps the values of a multi-value sensor side
// by side, and refuses types without a processor when processing is asked
// for (docs/api.md §7.2).
func TestUpsertRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")

	first := f.configure(t, Config{
		EspID:      esp,
		GPIO:       34,
		SensorType: "PH",
		Enabled:    true,
	})
	if first.ID == "" || first.SensorType != "ph" || first.ProcessingMode != "pi_enhanced" ||
		first.OperatingMode != "on_demand" || first.FreshnessHours == nil || *first.FreshnessHours != 24 {
		t.Fatalf("defaults: %+v", first)
	}

	f.now = t0.Add(1)
	again := f.configure(t, Config{
		EspID:      esp,
		GPIO:       34,
		SensorType: "ph_sensor",
		Name:       "pH",
	})
	if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) || !again.UpdatedAt.Equal(f.now) {
		t.Fatalf("same identity must replace: %+v vs %+v", again, first)
	}

	swapped := f.configure(t, Config{EspID: esp, GPIO: 34, SensorType: "moisture"})
	if swapped.ID != first.ID || len(f.svc.ByDevice(esp)) != 1 {
		t.Fatalf("a non-bus pin's sensor must be replaced: %+v, %d configs", swapped, len(f.svc.ByDevice(esp)))
	}

	temp := f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "sht31_temp",
		Enabled:    true,
	})
	hum := f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "sht31_humidity",
		Enabled:    true,
	})
	if temp.ID == hum.ID || len(f.svc.ByDevice(esp)) != 3 {
		t.Fatalf("the values of one SHT31 are two configs: %d", len(f.svc.ByDevice(esp)))
	}
	// One push item per physical sensor, typed as the firmware expects.
	if items := f.svc.SensorItems(esp); len(items) != 1 || items[0].SensorType != "sht31_temp" || items[0].GPIO != 21 {
		t.Fatalf("push items: %+v", items)
	}

	rain := Config{EspID: esp, GPIO: 5, SensorType: "rain"}
	if _, _, err := f.svc.Upsert(ctx, rain); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("unprocessable type: %v", err)
	}
	rain.ProcessingMode = "raw"
	if _, _, err := f.svc.Upsert(ctx, rain); err != nil {
		t.Fatalf("raw mode needs no processor: %v", err)
	}
	unknown := Config{EspID: "ESP_NONE", GPIO: 5, SensorType: "ph"}
	if _, _, err := f.svc.Upsert(ctx, unknown); !errors.Is(err, device.ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	var pe *PinError
	if _, _, err := f.svc.Upsert(ctx, Config{EspID: esp, GPIO: 6, SensorType: "flow"}); !errors.As(err, &pe) {
		t.Fatalf("reserved pin: %v", err)
	}

	f.store.saveErr = errors.New("read-only")
	if _, _, err := f.svc.Upsert(ctx, Config{EspID: esp, GPIO: 16, SensorType: "flow"}); err == nil {
		t.Fatal("a failed save must be reported")
	}
	if _, _, err := f.svc.Find(esp, 16, Selector{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed save must not be cached: %v", err)
	}
}

// A board takes so many physical sensors (docs/domain.md §1.5); the second value of
// a multi-value sensor does not count.
func TestUpsertLimit(t *testing.T) {
	cases := []struct {
		hw    string
		i2c   int // an I2C bus pin of the board
		limit int
	}{
		{"ESP32_WROOM", 21, maxSensors},
		{"XIAO_ESP32_C3", 4, maxSensorsXIAO},
	}
	for _, c := range cases {
		t.Run(c.hw, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.addDevice(esp, device.StatusOnline, c.hw)
			f.configure(t, Config{
				EspID:      esp,
				GPIO:       c.i2c,
				SensorType: "sht31_temp",
				I2CAddress: ptr(0x44),
			})
			// Light sensors of distinct addresses share the bus: each is a physical sensor.
			for i := 1; i < c.limit; i++ {
				f.configure(t, Config{
					EspID:      esp,
					GPIO:       c.i2c,
					SensorType: "light",
					I2CAddress: ptr(0x50 + i),
				})
			}

			extra := Config{
				EspID:      esp,
				GPIO:       c.i2c,
				SensorType: "light",
				I2CAddress: ptr(0x10),
			}
			if _, _, err := f.svc.Upsert(ctx, extra); !errors.Is(err, ErrLimit) {
				t.Fatalf("sensor %d: %v, want the limit", c.limit+1, err)
			}
			hum := Config{
				EspID:      esp,
				GPIO:       c.i2c,
				SensorType: "sht31_humidity",
				I2CAddress: ptr(0x44),
			}
			if _, _, err := f.svc.Upsert(ctx, hum); err != nil {
				t.Fatalf("the second value of a configured sensor: %v", err)
			}
		})
	}
}

// Find resolves a pin to one sensor, narrowing by type and bus address.
func TestFind(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	ds := f.configure(t, Config{
		EspID:          esp,
		GPIO:           4,
		SensorType:     "ds18b20",
		OneWireAddress: "28ffaa",
	})
	light := f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "light",
		I2CAddress: ptr(0x23),
	})
	light2 := f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "light",
		I2CAddress: ptr(0x5C),
	})
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       21,
		SensorType: "sht31_temp",
		I2CAddress: ptr(0x44),
	})

	cases := []struct {
		name  string
		gpio  int
		sel   Selector
		want  string
		cands int
		err   error
	}{
		{
			name:  "ambiguous pin",
			gpio:  21,
			cands: 3,
			err:   ErrAmbiguous,
		},
		{
			name:  "ambiguous type",
			gpio:  21,
			sel:   Selector{SensorType: "bh1750"},
			cands: 2,
			err:   ErrAmbiguous,
		},
		{
			name: "by I2C address",
			gpio: 21,
			sel:  Selector{I2CAddress: ptr(0x23)},
			want: light.ID,
		},
		{
			name: "by type and address",
			gpio: 21,
			sel:  Selector{SensorType: "light", I2CAddress: ptr(0x5C)},
			want: light2.ID,
		},
		{name: "the only sensor", gpio: 4, want: ds.ID},
		{
			name: "by OneWire address, other case",
			gpio: 4,
			sel:  Selector{OneWireAddress: "28FFAA"},
			want: ds.ID,
		},
		{
			name: "wrong OneWire address",
			gpio: 4,
			sel:  Selector{OneWireAddress: "28FFBB"},
			err:  ErrNotFound,
		},
		{
			name: "no match",
			gpio: 21,
			sel:  Selector{I2CAddress: ptr(0x77)},
			err:  ErrNotFound,
		},
		{name: "empty pin", gpio: 5, err: ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, cands, err := f.svc.Find(esp, c.gpio, c.sel)
			if !errors.Is(err, c.err) || got.ID != c.want || len(cands) != c.cands {
				t.Fatalf("got %s, %d candidates, %v", got.ID, len(cands), err)
			}
		})
	}
}

// Deleting configs removes them from every lookup, also after a reload,
// and a calibration is saved through Upsert.
func TestDeleteAndCalibration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addDevice(esp, device.StatusOnline, "")
	ph := f.configure(t, Config{EspID: esp, GPIO: 34, SensorType: "ph"})
	f.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20"})

	cal := map[string]any{"slope": 2.0, "offset": 1.0}
	got, err := f.svc.SaveCalibration(ctx, ph.ID, cal)
	if err != nil || got.Calibration["slope"] != 2.0 {
		t.Fatalf("calibration: %+v %v", got, err)
	}
	if _, err := f.svc.SaveCalibration(ctx, "nope", cal); !errors.Is(err, ErrNotFound) {
		t.Fatalf("calibration of an unknown sensor: %v", err)
	}

	if _, err := f.svc.Delete(ctx, ph.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ByID(ph.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted config still found: %v", err)
	}
	if _, err := f.svc.Delete(ctx, ph.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	reloaded := New(f.store, f.sink, f.devices, f.pub, f.bus, nil, Options{})
	if err := reloaded.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if all := reloaded.All(); len(all) != 1 || all[0].SensorType != "ds18b20" {
		t.Fatalf("after reload: %+v", all)
	}

	if err := f.svc.DeleteDevice(ctx, esp); err != nil {
		t.Fatal(err)
	}
	if n := len(f.svc.All()); n != 0 {
		t.Fatalf("%d configs left after deleting the device", n)
	}
}

// The firmware's processing call (docs/domain.md §2.1): real processing only for
// an admitted device with a pi_enhanced config, or a trusted caller; the
// firmware's own fallback otherwise.
func TestProcessRequest(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.addDevice("ESP_PENDING", device.StatusPending, "")
	f.configure(t, Config{EspID: esp, GPIO: 34, SensorType: "ph"})
	f.configure(t, Config{
		EspID:       esp,
		GPIO:        4,
		SensorType:  "ds18b20",
		Calibration: map[string]any{"offset": -0.5},
	})
	f.configure(t, Config{
		EspID:          esp,
		GPIO:           35,
		SensorType:     "moisture",
		ProcessingMode: "raw",
	})
	// Configured, but processing is refused until the device is approved.
	f.configure(t, Config{EspID: "ESP_PENDING", GPIO: 34, SensorType: "ph"})

	cases := []struct {
		name string
		req  ProcessRequest
		want ProcessReply
	}{
		{
			name: "configured sensor",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       34,
				SensorType: "ph",
				Raw:        2048,
			},
			want: ProcessReply{
				Value:   6.47,
				Unit:    "pH",
				Quality: "fair",
				Result:  "processed",
			},
		},
		{
			name: "the config's calibration, DS18B20 sign corrected",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       4,
				SensorType: "DS18B20",
				Raw:        1<<32 - 200,
			},
			want: ProcessReply{
				Value:   -13,
				Unit:    "°C",
				Quality: "fair",
				Result:  "processed",
			},
		},
		{
			name: "the request's calibration wins",
			req: ProcessRequest{
				EspID:       esp,
				GPIO:        4,
				SensorType:  "ds18b20",
				Raw:         400,
				Calibration: map[string]any{"offset": 1.0},
			},
			want: ProcessReply{
				Value:   26,
				Unit:    "°C",
				Quality: "good",
				Result:  "processed",
			},
		},
		{
			name: "physical input",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       4,
				SensorType: "ds18b20",
				Raw:        20,
				RawMode:    ptr(false),
			},
			want: ProcessReply{
				Value:   19.5,
				Unit:    "°C",
				Quality: "good",
				Result:  "processed",
			},
		},
		{
			name: "processor error",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       34,
				SensorType: "ph",
				Raw:        5000,
			},
			want: ProcessReply{
				Value:   5000,
				Unit:    "raw",
				Quality: "error",
				Result:  "error",
			},
		},
		{
			name: "raw config",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       35,
				SensorType: "moisture",
				Raw:        2000,
			},
			want: Fallback(2000, "fallback"),
		},
		{
			name: "no config",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       36,
				SensorType: "ph",
				Raw:        2000,
			},
			want: Fallback(2000, "fallback"),
		},
		{
			name: "no config, trusted caller",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       36,
				SensorType: "ph",
				Raw:        2048,
				Trusted:    true,
			},
			want: ProcessReply{
				Value:   6.47,
				Unit:    "pH",
				Quality: "fair",
				Result:  "processed",
			},
		},
		{
			name: "pending device, trusted caller",
			req: ProcessRequest{
				EspID:      "ESP_PENDING",
				GPIO:       34,
				SensorType: "ph",
				Raw:        2048,
				Trusted:    true,
			},
			want: ProcessReply{
				Value:   6.47,
				Unit:    "pH",
				Quality: "fair",
				Result:  "processed",
			},
		},
		{
			name: "pending device",
			req: ProcessRequest{
				EspID:      "ESP_PENDING",
				GPIO:       34,
				SensorType: "ph",
				Raw:        2048,
			},
			want: Fallback(2048, "fallback"),
		},
		{
			name: "unknown device",
			req: ProcessRequest{
				EspID:      "ESP_NONE",
				GPIO:       34,
				SensorType: "ph",
				Raw:        2048,
			},
			want: Fallback(2048, "fallback"),
		},
		{
			name: "no processor, even trusted",
			req: ProcessRequest{
				EspID:      esp,
				GPIO:       34,
				SensorType: "rain",
				Raw:        3,
				Trusted:    true,
			},
			want: Fallback(3, "fallback"),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := f.svc.Process(c.req); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// Push items carry the name sanitised and cut to 32 bytes on a character
// boundary, and leave out disabled sensors.
func TestSensorItemsNames(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	long := "Température \"bac\" nord-est, rangée 12"
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       34,
		SensorType: "ph",
		Name:       long,
		Enabled:    true,
	})
	f.configure(t, Config{
		EspID:      esp,
		GPIO:       4,
		SensorType: "ds18b20",
		Enabled:    false,
	})

	items := f.svc.SensorItems(esp)
	if len(items) != 1 {
		t.Fatalf("items %+v", items)
	}
	name := items[0].SensorName
	if len(name) > 32 || !utf8.ValidString(name) || strings.ContainsAny(name, `"\\`) ||
		!strings.HasPrefix(name, "Température bac") {
		t.Fatalf("name %q (%d bytes)", name, len(name))
	}
}
