package sensor

import (
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
)

// latestRaw is the raw value and time of the one latest reading on GPIO 34.
func latestRaw(t *testing.T, f *fixture) (float64, time.Time) {
	t.Helper()
	got := f.svc.Latest(esp, 34, "")
	if len(got) != 1 {
		t.Fatalf("latest readings: %d, want 1", len(got))
	}
	return got[0].Reading.Raw, time.UnixMilli(got[0].Reading.TS)
}

// A device time more than 30 s ahead of the hub is the hub's
// (docs/protocol.md §5.3, flagged time_source=hub): it neither dates the reading in the future
// nor keeps later readings from becoming the latest.
func TestFutureDeviceTimeDoesNotPinLatest(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")

	if err := f.send(esp, 34, reading("ph", 1000, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	r := f.sink.last(t)
	if r.TS != t0.UnixMilli() || r.TimeSource != string(contract.SourceHub) {
		t.Fatalf("an hour-ahead device time stored at %v (%s), want the receive time %v flagged hub",
			time.UnixMilli(r.TS).UTC(), r.TimeSource, t0)
	}

	f.now = t0.Add(10 * time.Second)
	if err := f.send(esp, 34, reading("ph", 2000, f.now.Add(20*time.Second))); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.last(t); r.TimeSource != string(contract.SourceDevice) {
		t.Fatalf("a device time 20 s ahead is the device's, got %s", r.TimeSource)
	}
	if raw, _ := latestRaw(t, f); raw != 2000 {
		t.Fatalf("latest raw %v, want the newer reading", raw)
	}
}

// When the hub's clock steps back, hub-timed readings are dated by the
// clock again instead of counting on from the series' future end, and the
// latest reading follows them; within 30 s readings still get distinct,
// rising keys.
func TestHubClockStepBackDoesNotPinSeries(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")
	noClock := func(raw float64) map[string]any { return map[string]any{"sensor_type": "ph", "raw": raw, "ts": 0} }

	if err := f.send(esp, 34, noClock(1000)); err != nil {
		t.Fatal(err)
	}
	if err := f.send(esp, 34, noClock(1001)); err != nil { // same millisecond
		t.Fatal(err)
	}
	if a, b := f.sink.readings[0].TS, f.sink.readings[1].TS; b != a+1 {
		t.Fatalf("two hub-timed readings in one millisecond: keys %d and %d, want distinct and rising", a, b)
	}

	f.now = t0.Add(-time.Hour) // NTP steps the hub's clock back an hour
	if err := f.send(esp, 34, noClock(2000)); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.last(t); r.TS != f.now.UnixMilli() {
		t.Fatalf("after the step back a reading is dated %v, want the clock's %v",
			time.UnixMilli(r.TS).UTC(), f.now)
	}
	if raw, at := latestRaw(t, f); raw != 2000 || !at.Equal(f.now) {
		t.Fatalf("latest %v at %v, want the reading after the step at %v", raw, at.UTC(), f.now)
	}

	f.now = f.now.Add(time.Second)
	if err := f.send(esp, 34, noClock(2001)); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.last(t); r.TS != f.now.UnixMilli() {
		t.Fatalf("the next reading is dated %v, want %v", time.UnixMilli(r.TS).UTC(), f.now)
	}
}
