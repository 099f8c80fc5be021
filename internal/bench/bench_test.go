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
