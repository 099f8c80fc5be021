package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// remote is the live event of a reading another replica ingested at at.
func remote(gpio int, sensorType string, value float64, at time.Time) event.SensorData {
	return event.SensorData{
		EspID:          esp,
		GPIO:           gpio,
		SensorType:     sensorType,
		Value:          value,
		RawValue:       value * 20,
		ProcessedValue: &value,
		Unit:           "°C",
		Quality:        "good",
		ProcessingMode: "pi_enhanced",
		ZoneID:         "z1",
		Timestamp:      at.Unix(),
	}
}

// latestValue is the processed latest value of esp's series on gpio.
func latestValue(t *testing.T, s *Service, gpio int) (float64, time.Time, bool) {
	t.Helper()
	l := s.Latest(esp, gpio, "")
	if len(l) != 1 || l[0].Reading.Processed == nil {
		t.Fatalf("latest of GPIO %d: %+v", gpio, l)
	}
	return *l[0].Reading.Processed, time.UnixMilli(l[0].Reading.TS), l[0].Stale
}

// A reading another replica ingested becomes the latest of its series when
// it is newer, for Latest and LatestOf, and is checked against the
// thresholds here (a standby leaves them to the primary), without being
// stored or raising an event; an older one, or one of the same second as
// the latest here, does none of this.
func TestApplyRemoteLatest(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	cfg := f.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20", Enabled: true, TimeoutSeconds: 60,
		ThresholdMax: ptr(50.0)})
	if err := f.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	events := f.bus.Subscribe(64)
	t.Cleanup(func() { f.bus.Unsubscribe(events) })
	stored, raised := len(f.sink.readings), len(f.alerts.raised)

	f.now = t0.Add(20 * time.Second)
	f.svc.ApplyRemote(remote(4, "DS18B20", 60.5, f.now)) // type as the firmware spells it, above the max
	if v, at, stale := latestValue(t, f.svc, 4); v != 60.5 || !at.Equal(f.now) || stale {
		t.Fatalf("latest %v at %v (stale %v), want the remote 60.5 at %v", v, at, stale, f.now)
	}
	if r, ok := f.svc.LatestOf(cfg); !ok || *r.Processed != 60.5 || r.Unit != "°C" || r.ZoneID != "z1" {
		t.Fatalf("LatestOf %+v %v", r, ok)
	}

	f.svc.ApplyRemote(remote(4, "ds18b20", 10, t0.Add(10*time.Second)))
	f.svc.ApplyRemote(remote(4, "ds18b20", 11, f.now.Add(900*time.Millisecond))) // the same second
	if v, _, _ := latestValue(t, f.svc, 4); v != 60.5 {
		t.Fatalf("latest %v after an older remote reading and one of the same second, want 60.5", v)
	}
	f.svc.ApplyRemote(remote(5, "ds18b20", 12, f.now.Add(time.Second))) // no such series here
	if l := f.svc.Latest(esp, 5, ""); len(l) != 0 {
		t.Fatalf("a remote reading without a series here made %+v", l)
	}

	// This replica's own next reading is newer again and takes over.
	f.now = t0.Add(30 * time.Second)
	if err := f.send(esp, 4, reading("ds18b20", 404, f.now)); err != nil {
		t.Fatal(err)
	}
	if _, at, _ := latestValue(t, f.svc, 4); !at.Equal(f.now) {
		t.Fatalf("latest at %v after a local reading at %v", at, f.now)
	}

	if n := len(f.sink.readings) - stored; n != 1 {
		t.Fatalf("%d readings stored, want only the local one", n)
	}
	if n := len(f.alerts.raised) - raised; n != 1 {
		t.Fatalf("remote readings raised %d alerts, want the one of 60.5 above the max of 50", n)
	}
	for {
		select {
		case e := <-events.C:
			if e.Type() != event.TypeSensorData {
				t.Fatalf("event %s", e.Type())
			}
			if d := e.Data.(event.SensorData); d.Timestamp != f.now.Unix() {
				t.Fatalf("a sensor_data event of %d, not of the local reading", d.Timestamp)
			}
		default:
			return
		}
	}
}

// Sensors on one bus pin that differ by address only: the sensor_data
// event of each names its address, and a relayed one updates the series of
// that address alone; one without an address matches neither.
func TestApplyRemoteFindsBusSensorsByAddress(t *testing.T) {
	for _, bus := range []struct {
		name, sensorType, field string
		gpio                    int
		addrs                   [2]any
		keys                    [2]string
		named                   func(event.SensorData) bool // the event names the second address
	}{
		{"onewire", "ds18b20", "onewire_address", 4, [2]any{"28aa", "28bb"}, [2]string{"ow:28AA", "ow:28BB"},
			func(d event.SensorData) bool { return d.OneWireAddress == "28BB" && d.I2CAddress == nil }},
		{"i2c", "sht31", "i2c_address", 21, [2]any{68, 69}, [2]string{"i2c:68", "i2c:69"},
			func(d event.SensorData) bool {
				return d.I2CAddress != nil && *d.I2CAddress == 69 && d.OneWireAddress == ""
			}},
	} {
		t.Run(bus.name, func(t *testing.T) {
			f := newFixture(t)
			f.addDevice(esp, device.StatusOnline, "")
			data := f.subscribe(t, "sensor_data")
			for i, addr := range bus.addrs {
				if err := f.send(esp, bus.gpio, reading(bus.sensorType, 400, t0.Add(time.Duration(i)*time.Second),
					bus.field, addr)); err != nil {
					t.Fatal(err)
				}
			}
			evs := data()
			if len(evs) != 2 {
				t.Fatalf("%d sensor_data events, want 2", len(evs))
			}
			relayed := evs[1].Data.(event.SensorData)
			if !bus.named(relayed) {
				t.Fatalf("the event of the second sensor names %q / %v", relayed.OneWireAddress, relayed.I2CAddress)
			}

			latestOf := func(addr string) float64 {
				t.Helper()
				for _, l := range f.svc.Latest(esp, bus.gpio, "") {
					if l.Key.Address == addr {
						return *l.Reading.Processed
					}
				}
				t.Fatalf("no series of %s", addr)
				return 0
			}
			before := latestOf(bus.keys[0])

			relayed.Value, relayed.ProcessedValue, relayed.Timestamp = 30, ptr(30.0), t0.Add(time.Minute).Unix()
			f.svc.ApplyRemote(relayed)
			if v := latestOf(bus.keys[1]); v != 30 {
				t.Fatalf("latest of %s %v after the relayed 30", bus.keys[1], v)
			}
			if v := latestOf(bus.keys[0]); v != before {
				t.Fatalf("latest of %s %v, was %v: the relayed reading of %s landed there", bus.keys[0], v, before, bus.keys[1])
			}

			f.svc.ApplyRemote(remote(bus.gpio, bus.sensorType, 40, t0.Add(2*time.Minute))) // no address
			for _, addr := range bus.keys {
				if v := latestOf(addr); v == 40 {
					t.Fatalf("a relayed reading without an address landed on %s", addr)
				}
			}
		})
	}
}

// A sensor marked stale whose readings come in through another replica is
// not stale for Latest at once, and the stale check announces its
// recovery and resolves the stale alert, then marks it stale again when
// those readings stop.
func TestApplyRemoteEndsStale(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20", Enabled: true, TimeoutSeconds: 60})
	health := f.subscribe(t, "sensor_health")
	if err := f.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	f.now = t0.Add(61 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.alerts.raised) != 1 || len(health()) != 1 {
		t.Fatalf("not stale: %d alerts", len(f.alerts.raised))
	}

	f.now = t0.Add(90 * time.Second)
	f.svc.ApplyRemote(remote(4, "ds18b20", 21, f.now))
	if _, _, stale := latestValue(t, f.svc, 4); stale {
		t.Fatal("latest is stale after a remote reading")
	}
	if evs := health(); len(evs) != 0 {
		t.Fatalf("ApplyRemote published %d sensor_health events", len(evs))
	}

	const key = "stale_" + esp + "_4_ds18b20"
	f.now = t0.Add(100 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	evs := health()
	if len(evs) != 1 || evs[0].Data.(event.SensorHealth).Status != "ok" || !slices.Contains(f.alerts.cleared, key) {
		t.Fatalf("recovery: events %+v, cleared %v", evs, f.alerts.cleared)
	}
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := health(); len(evs) != 0 {
		t.Fatalf("recovery announced again: %+v", evs)
	}

	f.now = t0.Add(151 * time.Second)
	if err := f.svc.CheckStale(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.alerts.raised) != 2 || f.alerts.raised[1].Key != key {
		t.Fatalf("not stale again once the remote readings stopped: %+v", f.alerts.raised)
	}
}

// site is two replicas' sensor services on one database: the primary
// changes configs, the standby reloads them on the notices it would get.
type site struct {
	primary, standby *Service
}

type openStore func(t *testing.T) (Store, Sink)

var realStores = []struct {
	name string
	open openStore
}{
	{"sqlite", func(t *testing.T) (Store, Sink) {
		st, sink, _ := newStoreService(t)
		t.Cleanup(func() { closeStore(t, st, sink) })
		return st, sink
	}},
	{"postgres", func(t *testing.T) (Store, Sink) {
		ctx := context.Background()
		st, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		sink := st.NewReadingSink(0, nil)
		t.Cleanup(func() {
			if err := sink.Close(ctx); err != nil {
				t.Error(err)
			}
			if err := st.Close(ctx); err != nil {
				t.Error(err)
			}
		})
		return st, sink
	}},
}

var _ deviceLoader = (*postgres.Store)(nil)

func newSite(t *testing.T, open openStore) *site {
	t.Helper()
	st, sink := open(t)
	devs := &memDevices{byID: map[string]device.Device{}}
	for _, id := range []string{esp, "ESP_OTHER"} {
		d := device.Device{}
		d.DeviceID, d.Status, d.HardwareType = id, device.StatusOnline, "ESP32_WROOM"
		devs.byID[id] = d
	}
	svc := func() *Service {
		s := New(st, sink, devs, &memPublisher{}, event.NewBus(), nil, Options{Logger: slog.New(slog.DiscardHandler)})
		if err := s.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	return &site{primary: svc(), standby: svc()}
}

// ingestOn hands svc a reading of esp's gpio, received now: the mode
// it was converted in, or the drop reason.
func ingestOn(t *testing.T, svc *Service, gpio int, payload map[string]any) string {
	t.Helper()
	topic := fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", esp, gpio)
	tp, err := contract.ParseTopic(topic)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	err = svc.HandleData(context.Background(), ingest.Message{Topic: tp, RawTopic: topic, Payload: b,
		ReceivedAt: time.Now()})
	if err != nil {
		if r := dropReason(err); r != "" {
			return r
		}
		t.Fatal(err)
	}
	l := svc.Latest(esp, gpio, "")
	if len(l) != 1 {
		t.Fatalf("latest of GPIO %d: %+v", gpio, l)
	}
	return l[0].Reading.Mode
}

func (s *site) refresh(t *testing.T) {
	t.Helper()
	if err := s.standby.RefreshDevice(context.Background(), esp); err != nil {
		t.Fatal(err)
	}
}

// A standby that reloads a device's configs after each change converts
// its readings with the configs the primary committed: added, changed and
// removed. The series state stays across reloads (a device time seen
// before is still a duplicate), and the standby learns of the series the
// primary opened. On both stores: SQLite's, where the reload reads every
// config, and PostgreSQL's, which reads one device's.
func TestRefreshDevice(t *testing.T) {
	for _, rs := range realStores {
		t.Run(rs.name, func(t *testing.T) {
			ctx := context.Background()
			s := newSite(t, rs.open)
			now := time.Now().Truncate(time.Second)
			at := func(i int) time.Time { return now.Add(time.Duration(i-10) * time.Second) }

			if mode := ingestOn(t, s.standby, 34, reading("ph", 2000, at(1))); mode != "raw" {
				t.Fatalf("mode %s without a config", mode)
			}
			c, _, err := s.primary.Upsert(ctx, Config{EspID: esp, GPIO: 34, SensorType: "ph", Enabled: true})
			if err != nil {
				t.Fatal(err)
			}
			other, _, err := s.primary.Upsert(ctx, Config{EspID: "ESP_OTHER", GPIO: 34, SensorType: "ph", Enabled: true})
			if err != nil {
				t.Fatal(err)
			}
			s.refresh(t)
			if mode := ingestOn(t, s.standby, 34, reading("ph", 2000, at(2))); mode != "pi_enhanced" {
				t.Fatalf("mode %s after the config was added", mode)
			}
			if got := s.standby.All(); len(got) != 1 || got[0].ID != c.ID {
				t.Fatalf("the standby holds %+v; only %s's config was reloaded", got, esp)
			}
			if r := ingestOn(t, s.standby, 34, reading("ph", 2000, at(2))); r != contract.ReasonDuplicate {
				t.Fatalf("a repeated device time after a reload: %s, want a duplicate", r)
			}

			c.Name, c.TimeoutSeconds = "tank pH", 120
			if _, _, err := s.primary.Upsert(ctx, c); err != nil {
				t.Fatal(err)
			}
			s.refresh(t)
			if got, err := s.standby.ByID(c.ID); err != nil || got.Name != "tank pH" || got.TimeoutSeconds != 120 {
				t.Fatalf("changed config on the standby: %+v %v", got, err)
			}

			if _, err := s.primary.Delete(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			s.refresh(t)
			if got := s.standby.ByDevice(esp); len(got) != 0 {
				t.Fatalf("removed config still on the standby: %+v", got)
			}
			if mode := ingestOn(t, s.standby, 34, reading("ph", 2000, at(3))); mode != "raw" {
				t.Fatalf("mode %s after the config was removed", mode)
			}

			// The primary opens a series; the standby's reload learns of it.
			if mode := ingestOn(t, s.primary, 4, reading("ds18b20", 400, at(4))); mode != "raw" {
				t.Fatalf("primary's reading: %s", mode)
			}
			want := s.primary.SeriesIDs(esp, 4, "ds18b20")
			if got := s.standby.SeriesIDs(esp, 4, "ds18b20"); len(got) != 0 {
				t.Fatalf("the standby knew of series %v before a reload", got)
			}
			s.refresh(t)
			if got := s.standby.SeriesIDs(esp, 4, "ds18b20"); !slices.Equal(got, want) || len(got) != 1 {
				t.Fatalf("the standby's series %v, the primary's %v", got, want)
			}
			s.standby.ApplyRemote(event.SensorData{EspID: esp, GPIO: 4, SensorType: "ds18b20", RawValue: 400,
				ProcessedValue: ptr(25.0), Quality: "good", Timestamp: at(4).Unix()})
			if l := s.standby.Latest(esp, 4, ""); len(l) != 1 || *l[0].Reading.Processed != 25 {
				t.Fatalf("the relayed reading of the learnt series: %+v", l)
			}

			// RefreshAll: every device's configs as the primary has them,
			// series state kept.
			if _, err := s.primary.Delete(ctx, other.ID); err != nil {
				t.Fatal(err)
			}
			for _, gpio := range []int{32, 33} {
				if _, _, err := s.primary.Upsert(ctx, Config{EspID: "ESP_OTHER", GPIO: gpio, SensorType: "moisture",
					Enabled: true}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.standby.RefreshAll(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := ids(s.standby.All()), ids(s.primary.All()); !slices.Equal(got, want) || len(got) != 2 {
				t.Fatalf("the standby's configs %v, the primary's %v", got, want)
			}
			if r := ingestOn(t, s.standby, 34, reading("ph", 2000, at(3))); r != contract.ReasonDuplicate {
				t.Fatalf("a repeated device time after a whole reload: %s, want a duplicate", r)
			}
		})
	}
}

func ids(cs []Config) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// Reloads run beside ingest, relayed readings and reads of the latest
// values (run with -race).
func TestRefreshBesideIngest(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{EspID: esp, GPIO: 34, SensorType: "ph", Enabled: true})
	f.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20", Enabled: true})
	if err := f.send(esp, 4, reading("ds18b20", 400, t0.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ingested, relayed atomic.Int64
	wg.Go(func() { // the only writer of the fixture's sink and publisher
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ingested.Add(1)
			if err := f.send(esp, 34, reading("ph", 2000, t0.Add(-time.Duration(i)*time.Second))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f.svc.ApplyRemote(remote(4, "ds18b20", float64(i), t0.Add(time.Duration(i)*time.Second)))
			f.svc.Latest(esp, -1, "")
			relayed.Add(1)
		}
	})
	// Reloads go on until each of the others has run many times beside them.
	for i := 0; i < 50 || ingested.Load() < 500 || relayed.Load() < 500; i++ {
		var err error
		if i%5 == 0 {
			err = f.svc.RefreshAll(ctx)
		} else {
			err = f.svc.RefreshDevice(ctx, esp)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if got := f.svc.ByDevice(esp); len(got) != 2 {
		t.Fatalf("configs after the reloads: %+v", got)
	}
}

// A standby's service (NoThresholds) stores and publishes a reading above
// its sensor's max but raises no alert: the primary does, from the
// relayed reading.
func TestNoThresholdsOnAStandby(t *testing.T) {
	f := newFixture(t)
	f.svc.opt.NoThresholds = true
	f.addDevice(esp, device.StatusOnline, "")
	f.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20", Enabled: true, ThresholdMax: ptr(-100.0)})
	if err := f.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	if len(f.sink.readings) != 1 {
		t.Fatalf("%d readings stored", len(f.sink.readings))
	}
	if len(f.alerts.raised) != 0 {
		t.Fatalf("the standby raised %+v", f.alerts.raised)
	}

	primary := newFixture(t)
	primary.addDevice(esp, device.StatusOnline, "")
	primary.configure(t, Config{EspID: esp, GPIO: 4, SensorType: "ds18b20", Enabled: true, ThresholdMax: ptr(-100.0)})
	if err := primary.send(esp, 4, reading("ds18b20", 400, t0)); err != nil {
		t.Fatal(err)
	}
	if len(primary.alerts.raised) != 1 {
		t.Fatalf("the same reading on a hub that evaluates raised %d alerts", len(primary.alerts.raised))
	}
}
