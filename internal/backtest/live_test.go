package backtest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The claim of docs/decisions/0017-backtest.md: a backtest answers what the
// live engine would have done. A week of the heater of docs/domain.md §6.13
// is stored, then played through the real engine at the readings' own
// times (the bubble's clock) and replayed by the backtest over the same
// store; the commands the engine issued and those the backtest's firings
// would send must be the same, at the same times. The engine's clock is
// injected and set to each reading's time (a week of the bubble's clock
// would tick the store's checkpointer 604,800 times); synctest.Wait
// returns once the engine has handled the reading.
func TestBacktestMatchesTheLiveEngineOverAWeek(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		// No batching wait: the engine commits under a rule's lock.
		st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{Logger: quiet, BatchWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		bus := event.NewBus()
		start := at(0, 0, 0)
		clock := &replayClock{now: start.Add(-time.Minute)}
		acts := &liveActuators{clock: clock, fakeActuators: fakeActuators{
			{EspID: "ESP_12AB34", GPIO: 26, Type: "relay", Enabled: true, MaxValue: 1, MaxRuntimeSeconds: 3600},
		}}
		sens := liveSensors{fakeSensors{{EspID: "ESP_12AB34", GPIO: 4, SensorType: "ds18b20"}}}
		eng := logic.New(logic.Deps{
			Store:     st,
			Actuators: acts,
			Devices:   onlineDevices{},
			Sensors:   sens,
			Alerts:    noAlerts{},
			Users:     noUsers{},
			Events:    bus,
		}, logic.Options{Logger: quiet, Now: clock.Now})
		if err := eng.Load(ctx); err != nil {
			t.Fatal(err)
		}
		eng.Start()
		// Stopped before any failure leaves the bubble, so a failure
		// reports itself instead of goroutines left running.
		defer func() {
			eng.Stop()
			if err := st.Close(ctx); err != nil {
				t.Error(err)
			}
		}()
		heater, _, err := eng.Create(ctx, []byte(heaterRule))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		week := weekOfDips(start)
		storeReadings(t, st, week)

		for _, r := range week {
			clock.set(r.at)
			v := r.v
			bus.Publish(event.Event{Data: event.SensorData{
				EspID:          "ESP_12AB34",
				GPIO:           4,
				SensorType:     "ds18b20",
				Value:          v,
				ProcessedValue: &v,
				Quality:        "good",
				Timestamp:      r.at.Unix(),
			}})
			synctest.Wait()
		}
		live := acts.sent()

		bt := New(Deps{History: st, Rules: eng, Actuators: acts, Sensors: sens}, Options{})
		rep, err := bt.Run(ctx, Request{RuleID: heater.ID, Start: start, End: start.Add(7 * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.FiringsTruncated || rep.Summary.Samples != len(week) {
			t.Fatalf("the replay did not cover the week: %+v", rep.Summary)
		}
		replayed := wouldSend(rep)

		ons := 0
		for _, c := range live {
			if c.command == "ON" {
				ons++
			}
		}
		if ons < 42 || len(live)-ons < 42 {
			t.Fatalf("the week should switch the heater on and off at each of its 42 dips: %d ON, %d OFF",
				ons, len(live)-ons)
		}
		t.Logf("%d commands (%d ON), %d firings, first %v, last %v", len(live), ons, len(rep.Firings), live[0], live[len(live)-1])
		if !slices.Equal(live, replayed) {
			t.Fatalf("live and backtest differ\nfirst difference: %s\nlive %d commands, backtest %d",
				firstDifference(live, replayed), len(live), len(replayed))
		}
	})
}

type sample struct {
	at time.Time
	v  float64
}

// weekOfDips is a reading a minute for seven days: 20 °C, and every four
// hours a 40-minute dip to 16 °C and a 40-minute overshoot to 22 °C, so the
// heater is on for about 40 minutes (under the relay's one-hour bound) six
// times a day and repeats its ON every cooldown while on.
func weekOfDips(start time.Time) []sample {
	var out []sample
	for m := range 7 * 24 * 60 {
		phase := m % 240
		v := 20.0
		switch {
		case phase < 40:
			v = 20 - 4*math.Sin(math.Pi*float64(phase)/40)
		case phase < 80:
			v = 20 + 2*math.Sin(math.Pi*float64(phase-40)/40)
		}
		out = append(out, sample{start.Add(time.Duration(m) * time.Minute), math.Round(v*100) / 100})
	}
	return out
}

func storeReadings(t *testing.T, st *sqlite.Store, week []sample) {
	t.Helper()
	ctx := context.Background()
	series, err := st.EnsureSeries(ctx, store.SeriesKey{EspID: "ESP_12AB34", GPIO: 4, SensorType: "ds18b20"})
	if err != nil {
		t.Fatal(err)
	}
	sink := st.NewReadingSink(0, nil)
	for _, r := range week {
		v := r.v
		err := sink.Add(ctx, store.Reading{
			SeriesID:   series,
			TS:         r.at.UnixMilli(),
			Raw:        v,
			Processed:  &v,
			Unit:       "°C",
			Quality:    "good",
			Mode:       "raw",
			TimeSource: "device",
			ReceivedAt: r.at.UnixMilli(),
			Source:     "production",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// sentCommand is a command to an output at a time.
type sentCommand struct {
	at      time.Time
	target  string
	command string
}

func (c sentCommand) String() string {
	return fmt.Sprintf("%s %s %s", c.at.Format(time.RFC3339), c.target, c.command)
}

// wouldSend lists the commands the backtest's firings would have sent: a
// firing's command actions that were not skipped or blocked, and the OFF
// of a hysteresis deactivation.
func wouldSend(rep Report) []sentCommand {
	var out []sentCommand
	for _, f := range rep.Firings {
		for _, a := range f.Actions {
			if a.Type != "actuator" && a.Type != "actuator_command" {
				continue
			}
			if a.Status == StatusNoChange || a.Status == StatusBlocked {
				continue
			}
			out = append(out, sentCommand{a.At.UTC(), a.Target, a.Command})
		}
	}
	return out
}

func firstDifference(a, b []sentCommand) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("#%d live %s, backtest %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("one list ends at %d", min(len(a), len(b)))
}

// replayClock is the engine's clock, at the time of the reading being played.
type replayClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *replayClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *replayClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// liveActuators records the engine's commands at the engine's time and
// reports each as acknowledged when asked.
type liveActuators struct {
	fakeActuators
	clock *replayClock
	mu    sync.Mutex
	log   []sentCommand
}

func (a *liveActuators) record(esp string, gpio int, command string) actuator.Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, sentCommand{a.clock.Now().UTC(), fmt.Sprintf("%s:%d", esp, gpio), command})
	return actuator.Result{CommandID: uuid.NewString(), Status: actuator.StatusSent, Command: command, Published: true}
}

func (a *liveActuators) Command(_ context.Context, req actuator.Request) (actuator.Result, error) {
	return a.record(req.EspID, req.GPIO, req.Command), nil
}

func (a *liveActuators) Check(req actuator.Request) (actuator.Result, error) {
	return actuator.Result{Command: req.Command, Value: 1}, nil
}

func (a *liveActuators) Off(_ context.Context, r actuator.OffRequest) (actuator.Result, error) {
	return a.record(r.EspID, r.GPIO, "OFF"), nil
}

func (a *liveActuators) State(string, int) (actuator.StateView, error) {
	return actuator.StateView{State: "off"}, nil
}

func (a *liveActuators) CommandByID(_ context.Context, id string) (store.ActuatorCommand, error) {
	return store.ActuatorCommand{ID: id, Status: actuator.StatusAcknowledged}, nil
}

func (a *liveActuators) sent() []sentCommand {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.log)
}

type liveSensors struct{ fakeSensors }

func (liveSensors) Latest(string, int, string) []sensor.LatestValue { return nil }

type onlineDevices struct{}

func (onlineDevices) Get(esp string) (device.Device, error) {
	return device.Device{Device: store.Device{DeviceID: esp, Status: device.StatusOnline}}, nil
}

type noAlerts struct{}

func (noAlerts) Raise(context.Context, notify.Spec) error { return nil }

func (noAlerts) Send(_ context.Context, _ notify.Spec, users []int64) ([]int64, error) {
	return users, nil
}

type noUsers struct{}

func (noUsers) Users(context.Context) ([]store.User, error) { return nil, nil }
