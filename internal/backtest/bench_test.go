package backtest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A month of the heater of docs/domain.md §6.13 over a real SQLite store:
// the replay alone, store reads included, at one reading a minute (43,200
// values, the bound of issue 10) and one every 30 s (86,400).
func BenchmarkReplayMonth(b *testing.B) {
	for _, every := range []time.Duration{time.Minute, 30 * time.Second} {
		b.Run(fmt.Sprintf("every_%s", every), func(b *testing.B) {
			replayMonth(b, every)
		})
	}
}

func replayMonth(b *testing.B, every time.Duration) {
	f := newFixture(b)
	temp := f.series("ESP_12AB34", 4, "ds18b20")
	start := at(0, 0, 0)
	month := 30 * 24 * time.Hour
	n := int(month / every)
	perSwing := int(6 * time.Hour / every)
	for i := range n {
		// A slow swing between 16 and 23 °C, a period of 6 hours.
		phase := float64(i%perSwing) / float64(perSwing)
		v := 16 + 7*phase
		if phase > 0.5 {
			v = 23 - 7*(phase-0.5)*2
		}
		f.write(temp, start.Add(time.Duration(i)*every), v)
	}
	f.flush()
	heater := f.save("11111111-1111-1111-1111-111111111111", heaterRule)
	req := Request{RuleID: heater.ID, Start: start, End: start.Add(month)}
	b.ResetTimer()
	for b.Loop() {
		rep, err := f.svc.Run(context.Background(), req)
		if err != nil || rep.Summary.Samples != n {
			b.Fatalf("%+v %v", rep.Summary, err)
		}
	}
}
