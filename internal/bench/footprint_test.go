package bench

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker/mosquitto"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// kaiserBinary builds kaiser from this tree once for the package's tests.
var kaiserBinary = struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}{}

func TestMain(m *testing.M) {
	code := m.Run()
	if kaiserBinary.dir != "" {
		os.RemoveAll(kaiserBinary.dir)
	}
	os.Exit(code)
}

// buildKaiser skips the test where kaiser cannot run as a measured child.
func buildKaiser(t *testing.T) string {
	t.Helper()
	if testing.Short() || runtime.GOOS != "linux" {
		t.Skip("builds kaiser and runs it as a child; reads /proc")
	}
	b := &kaiserBinary
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "kaiser-bench-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "kaiser")
		b.out, b.err = exec.Command("go", "build", "-o", b.path, "../../cmd/kaiser").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build kaiser: %v\n%s", b.err, b.out)
	}
	return b.path
}

// TestFootprintScenario runs the footprint scenario briefly against a real
// `kaiser serve` child built from this tree: every reading is stored, the
// QoS 1 probes and the WebSocket client see their readings, and the
// resources come from the child's /proc and /metrics.
func TestFootprintScenario(t *testing.T) {
	bin := buildKaiser(t)
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
		len(res.Samples) < 3 || res.Samples[len(res.Samples)-1].Published < res.Stored-40 ||
		len(res.Hubs) != 1 || res.Hubs[0].Role != "solo" || res.CPUSeconds <= 0 || res.CPUPer1k <= 0 {
		t.Fatalf("result %+v", res)
	}
}

// TestFootprintReplicas runs the footprint scenario on two replicas of one
// site, a real Mosquitto and PostgreSQL: the first leads, the second
// stands by, both store a share of the readings (the shared subscription
// splits them), the readings are counted in the database, and the CPU of
// each child and of the PostgreSQL server is measured.
func TestFootprintReplicas(t *testing.T) {
	bin := buildKaiser(t)
	broker := mosquitto.Start(t, mosquitto.Options{})
	pg := pgtest.Start(t, pgtest.Config{})
	postmaster := postmasterPID(t, pg.URL("postgres"))
	res, err := Footprint(context.Background(), FootprintConfig{
		Devices: 20, Rate: 20, Duration: 3 * time.Second, Warmup: 2 * time.Second, Sample: time.Second,
		Binary: bin, Replicas: 2, Database: pg.URL("postgres"), Broker: broker.URL(false),
		AlsoMeasure: []int{postmaster},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Store != "postgresql" || res.Replicas != 2 || len(res.Hubs) != 2 ||
		res.Hubs[0].Role != "primary" || res.Hubs[1].Role != "standby" {
		t.Fatalf("hubs %+v", res.Hubs)
	}
	var measured int64
	for i, h := range res.Hubs {
		if h.CPUSeconds <= 0 || h.CPUPct <= 0 || h.RSSMB <= 0 || h.Stored <= 0 || h.Share <= 0 {
			t.Fatalf("hub %d: %+v", i, h)
		}
		measured += h.Stored
	}
	// The database holds the warm-up's readings too, and those stored after
	// the last sample.
	if res.Stored < measured || res.Stored < 60 || res.CPUPer1k <= 0 || res.DurableProbe != 0 ||
		len(res.Samples[len(res.Samples)-1].HubCPUPct) != 2 || res.BytesPer != 0 {
		t.Fatalf("result %+v", res)
	}
	if len(res.Others) != 1 || res.Others[0].Name != "postgres" || res.Others[0].CPUSeconds <= 0 {
		t.Fatalf("the PostgreSQL server's CPU: %+v", res.Others)
	}
	t.Logf("%d readings stored; hubs %+v; cpu %.2f s per 1,000", res.Stored, res.Hubs, res.CPUPer1k)
}

// TestFailover SIGKILLs the primary of two replicas once: the other
// leads, stores readings and accepts a command (all after the kill, in
// that order for the role and what needs it), and the killed one, started
// again, stands by.
func TestFailover(t *testing.T) {
	bin := buildKaiser(t)
	broker := mosquitto.Start(t, mosquitto.Options{})
	pg := pgtest.Start(t, pgtest.Config{})
	res, err := Failover(context.Background(), FailoverConfig{
		Devices: 10, Rate: 10, Repeat: 1, Warmup: time.Second, Binary: bin,
		Database: pg.URL("postgres"), Broker: broker.URL(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1 {
		t.Fatalf("runs %+v", res.Runs)
	}
	r := res.Runs[0]
	// The lease's TTL is 10 s: a takeover comes within it and a retry.
	if r.Killed != 0 || r.TakeoverS <= 0 || r.TakeoverS > 15 || r.StoredS < r.TakeoverS ||
		r.CommandS <= 0 || r.AckedS < r.CommandS || r.RestartS <= 0 || r.Published <= 0 ||
		res.Takeover.Median != r.TakeoverS {
		t.Fatalf("run %+v", r)
	}
	t.Logf("%+v", r)
}

// postmasterPID reads the server's PID from the lock file of its unix
// socket, whose first line it is.
func postmasterPID(t *testing.T, dbURL string) int {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	b, err := os.ReadFile(filepath.Join(q.Get("host"), ".s.PGSQL."+q.Get("port")+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("socket lock file: %q", b)
	}
	return pid
}
