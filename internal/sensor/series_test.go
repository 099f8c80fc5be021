package sensor

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
)

// A reading that would open a series beyond the cap per device, or beyond
// the hub's, is dropped as series_limit and opens nothing; readings of
// existing series and of configured sensors go on.
func TestSeriesCaps(t *testing.T) {
	f := newFixture(t)
	f.svc = New(f.store, f.sink, f.devices, f.pub, f.bus, f.alerts, Options{
		Logger:             slog.New(slog.DiscardHandler),
		MaxSeriesPerDevice: 3,
		MaxSeries:          5,
	})
	f.svc.now = func() time.Time { return f.now }
	f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")
	f.addDevice("ESP_B", device.StatusOnline, "ESP32_WROOM")
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }

	for i := range 3 {
		if err := f.send(esp, 34, reading(fmt.Sprintf("made_up_%d", i), 1, at(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.send(esp, 34, reading("made_up_3", 1, at(3))); dropReason(err) != contract.ReasonSeriesLimit {
		t.Fatalf("a fourth series on a device capped at 3: %v, want series_limit", err)
	}
	if err := f.send(esp, 34, reading("made_up_0", 2, at(4))); err != nil {
		t.Fatalf("a reading of an existing series: %v", err)
	}
	f.configure(t, Config{EspID: esp, GPIO: 35, SensorType: "ph", Enabled: true})
	if err := f.send(esp, 35, reading("ph", 2048, at(5))); err != nil {
		t.Fatalf("a configured sensor's first reading beyond the cap: %v", err)
	}

	if err := f.send("ESP_B", 34, reading("ph", 1, at(6))); err != nil {
		t.Fatal(err)
	}
	if err := f.send("ESP_B", 34, reading("ec", 1, at(7))); dropReason(err) != contract.ReasonSeriesLimit {
		t.Fatalf("a sixth series on a hub capped at 5: %v, want series_limit", err)
	}
	f.store.mu.Lock()
	n := len(f.store.series)
	f.store.mu.Unlock()
	if n != 5 {
		t.Fatalf("series stored: %d, want 5", n)
	}
	if len(f.sink.readings) != 6 {
		t.Fatalf("readings stored: %d, want 6", len(f.sink.readings))
	}
}
