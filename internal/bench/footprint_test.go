package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestFootprintScenario runs the footprint scenario briefly against a real
// `kaiser serve` child built from this tree: every reading is stored, the
// QoS 1 probes and the WebSocket client see their readings, and the
// resources come from the child's /proc and /metrics.
func TestFootprintScenario(t *testing.T) {
	if testing.Short() || runtime.GOOS != "linux" {
		t.Skip("builds kaiser and runs it as a child; reads /proc")
	}
	bin := filepath.Join(t.TempDir(), "kaiser")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kaiser").CombinedOutput(); err != nil {
		t.Fatalf("build kaiser: %v\n%s", err, out)
	}
	csv := filepath.Join(t.TempDir(), "samples.csv")
	res, err := Footprint(context.Background(), FootprintConfig{
		Devices: 20, Rate: 20, Duration: 3 * time.Second, Warmup: time.Second, Sample: time.Second,
		Binary: bin, ProbeEvery: 4, CSV: csv,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored < 60 || res.DurableProbe == 0 || res.Durable.P50ms <= 0 || res.WSDelivered < 0.9 ||
		res.RSSMB <= 0 || res.HeapMB <= 0 || res.Goroutines < 40 || res.BytesPer <= 0 || res.TablePer <= 0 ||
		len(res.Samples) < 3 || res.Samples[len(res.Samples)-1].Published < res.Stored-40 {
		t.Fatalf("result %+v", res)
	}
}
