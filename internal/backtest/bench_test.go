package backtest

import (
	"context"
	"testing"
	"time"
)

// A month of the heater of docs/domain.md §6.13 with a reading every 30 s
// (86,400 values): the replay alone, store reads included.
func BenchmarkReplayMonth(b *testing.B) {
	f := newFixture(b)
	temp := f.series("ESP_12AB34", 4, "ds18b20")
	start := at(0, 0, 0)
	for i := range 30 * 2880 {
		// A slow swing between 16 and 23 °C, a period of 6 hours.
		phase := float64(i%720) / 720
		v := 16 + 7*phase
		if phase > 0.5 {
			v = 23 - 7*(phase-0.5)*2
		}
		f.write(temp, start.Add(time.Duration(i)*30*time.Second), v)
	}
	f.flush()
	heater := f.save("11111111-1111-1111-1111-111111111111", heaterRule)
	req := Request{RuleID: heater.ID, Start: start, End: start.Add(30 * 24 * time.Hour)}
	b.ResetTimer()
	for b.Loop() {
		rep, err := f.svc.Run(context.Background(), req)
		if err != nil || rep.Summary.Samples != 30*2880 {
			b.Fatalf("%+v %v", rep.Summary, err)
		}
	}
}
