package bench

import (
	"context"
	"testing"
	"time"
)

// TestIngestNoLoss runs a short ingest scenario: the closed loop must store
// every reading it published, and the baseline must be measured.
func TestIngestNoLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput scenario")
	}
	res, err := Ingest(context.Background(), IngestConfig{Devices: 4, Sensors: 2, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || res.DurableReadingsPS <= 0 || res.BaselinePS <= 0 || len(res.Latency) != 3 {
		t.Fatalf("result %+v", res)
	}
}

func BenchmarkIngestToDurable(b *testing.B) {
	res, err := Ingest(context.Background(), IngestConfig{Devices: 20, Sensors: 5, Duration: 8 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.DurableReadingsPS, "readings/s")
	b.ReportMetric(res.BaselinePS, "baseline_msg/s")
	b.ReportMetric(res.Ratio, "ratio")
}

// TestCommandScenario runs the command scenario briefly: every command
// reaches its node and is acknowledged, in both phases, for the hub and
// the bare broker, and the background load is delivered.
func TestCommandScenario(t *testing.T) {
	res, err := Command(context.Background(), CommandConfig{
		Devices:    2,
		Duration:   400 * time.Millisecond,
		Interval:   20 * time.Millisecond,
		Background: 2000,
		Console:    testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 {
		t.Fatalf("phases %+v", res.Phases)
	}
	for _, p := range res.Phases {
		t.Run(p.Name, func(t *testing.T) {
			if p.Commands == 0 || p.ToDevice.P50ms <= 0 || p.Acknowledged.P50ms < p.ToDevice.P50ms {
				t.Errorf("hub %+v", p)
			}
			if p.BaselineToDevice.P50ms <= 0 || p.BaselineRoundTrip.P50ms < p.BaselineToDevice.P50ms {
				t.Errorf("baseline %+v", p)
			}
		})
	}
	if bg := res.Phases[1]; bg.BackgroundPS <= 0 || bg.BaselineBackgroundPS <= 0 {
		t.Errorf("no background load: %+v", bg)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// BenchmarkCommand is the command scenario with 5 s phases (the REST
// command path, idle and under 20,000 readings/s); profile it with
// -cpuprofile or -blockprofile.
func BenchmarkCommand(b *testing.B) {
	res, err := Command(context.Background(), CommandConfig{Duration: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	idle, loaded := res.Phases[0], res.Phases[1]
	b.ReportMetric(idle.ToDevice.P99ms, "idle_to_device_p99_ms")
	b.ReportMetric(idle.Acknowledged.P99ms, "idle_ack_p99_ms")
	b.ReportMetric(loaded.ToDevice.P99ms, "loaded_to_device_p99_ms")
	b.ReportMetric(loaded.Acknowledged.P99ms, "loaded_ack_p99_ms")
	b.ReportMetric(loaded.BaselineToDevice.P99ms, "loaded_baseline_p99_ms")
}
