package backtest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// fixture is a backtest over a real SQLite store with the actuator and
// sensor configs of docs/domain.md §6.13.
type fixture struct {
	t     testing.TB
	st    *sqlite.Store
	sink  *sqlite.ReadingSink
	rules *fakeRules
	svc   *Service
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, sink: st.NewReadingSink(0, nil), rules: &fakeRules{}}
	t.Cleanup(func() {
		if err := f.sink.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := st.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	acts := fakeActuators{
		{EspID: "ESP_12AB34", GPIO: 25, Type: "relay", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600},
		{EspID: "ESP_12AB34", GPIO: 26, Type: "relay", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600},
		// Not in the examples: a relay with a 10-minute cooldown and a disabled one.
		{EspID: "ESP_12AB34", GPIO: 27, Type: "relay", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600,
			CooldownSeconds: 600},
		{EspID: "ESP_12AB34", GPIO: 14, Type: "relay", MaxValue: 1, MaxRuntimeSeconds: 3600},
		{EspID: "ESP_A1B2C3", GPIO: 27, Type: "relay", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600},
		{EspID: "ESP_A1B2C3", GPIO: 32, Type: "pwm", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600},
	}
	sens := fakeSensors{
		{EspID: "ESP_12AB34", GPIO: 21, SensorType: "sht31_temp"},
		{EspID: "ESP_12AB34", GPIO: 4, SensorType: "ds18b20"},
		{EspID: "ESP_A1B2C3", GPIO: 34, SensorType: "moisture"},
		{EspID: "ESP_A1B2C3", GPIO: 35, SensorType: "ec"},
	}
	f.svc = New(Deps{History: st, Rules: f.rules, Actuators: acts, Sensors: sens}, Options{})
	return f
}

// series is the id of a sensor series.
func (f *fixture) series(esp string, gpio int, typ string) int64 {
	f.t.Helper()
	id, err := f.st.EnsureSeries(context.Background(), store.SeriesKey{EspID: esp, GPIO: gpio, SensorType: typ})
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// write stores one processed reading.
func (f *fixture) write(series int64, at time.Time, v float64) {
	f.t.Helper()
	r := store.Reading{
		SeriesID:   series,
		TS:         at.UnixMilli(),
		Raw:        v,
		Processed:  &v,
		Unit:       "°C",
		Quality:    "good",
		Mode:       "raw",
		TimeSource: "device",
		ReceivedAt: at.UnixMilli(),
		Source:     "production",
	}
	if err := f.sink.Add(context.Background(), r); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) flush() {
	f.t.Helper()
	if err := f.sink.Flush(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// save stores a rule document as a saved, enabled rule.
func (f *fixture) save(id, doc string) rule.Rule {
	f.t.Helper()
	r, issues := rule.Decode([]byte(doc))
	if len(issues) > 0 {
		f.t.Fatalf("rule document: %v", issues)
	}
	r.ID = id
	f.rules.list = append(f.rules.list, logic.Rule{Rule: r})
	return r
}

func (f *fixture) run(req Request) Report {
	f.t.Helper()
	rep, err := f.svc.Run(context.Background(), req)
	if err != nil {
		f.t.Fatalf("backtest: %v", err)
	}
	return rep
}

type fakeRules struct{ list []logic.Rule }

func (r *fakeRules) Get(_ context.Context, id string) (logic.Rule, error) {
	for _, x := range r.list {
		if x.ID == id {
			return x, nil
		}
	}
	return logic.Rule{}, logic.ErrNotFound
}

func (r *fakeRules) List(context.Context, *bool) ([]logic.Rule, error) { return r.list, nil }

type fakeActuators []actuator.Config

func (a fakeActuators) Get(espID string, gpio int) (actuator.Config, error) {
	for _, c := range a {
		if c.EspID == espID && c.GPIO == gpio {
			return c, nil
		}
	}
	return actuator.Config{}, errors.New("actuator not found")
}

func (a fakeActuators) ByDevice(espID string) []actuator.Config {
	var out []actuator.Config
	for _, c := range a {
		if c.EspID == espID {
			out = append(out, c)
		}
	}
	return out
}

type fakeSensors []sensor.Config

func (s fakeSensors) ByDevice(espID string) []sensor.Config {
	var out []sensor.Config
	for _, c := range s {
		if c.EspID == espID {
			out = append(out, c)
		}
	}
	return out
}

// at is a time on 2024-03-06, a Wednesday, in UTC.
func at(hh, mm, ss int) time.Time { return time.Date(2024, 3, 6, hh, mm, ss, 0, time.UTC) }

func actuatorOf(t *testing.T, rep Report, esp string, gpio int) ActuatorReport {
	t.Helper()
	for _, a := range rep.Actuators {
		if a.EspID == esp && a.GPIO == gpio {
			return a
		}
	}
	t.Fatalf("no actuator %s:%d in %+v", esp, gpio, rep.Actuators)
	return ActuatorReport{}
}

func warningOf(rep Report, code string) *Warning {
	for i := range rep.Warnings {
		if rep.Warnings[i].Code == code {
			return &rep.Warnings[i]
		}
	}
	return nil
}
