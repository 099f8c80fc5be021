package credential

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sim"
)

// current lets the broker ask whichever service the benchmark installed:
// a fresh one has no cached password, as after a hub restart.
type current struct{ svc atomic.Pointer[Service] }

func (c *current) Check(id, user string, pw []byte) (uint64, error) {
	return c.svc.Load().Check(id, user, pw)
}
func (c *current) Generation(id string) uint64 { return c.svc.Load().Generation(id) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReconnectStorm connects 1000 credentialed nodes at once to the
// real broker in devices mode (connect rate unbounded) and reports the
// process CPU and wall time of one storm: cold is the first storm after a
// start (every password compared with bcrypt), warm a storm of the same
// nodes again (cached). go test -run - -bench ReconnectStorm ./internal/credential/
func BenchmarkReconnectStorm(b *testing.B) {
	const nodes = 1000
	f := newFixture(b)
	for i := range nodes {
		f.devices.set(fmt.Sprintf("ESP_%06X", i), device.StatusOnline)
	}
	f.svc = New(f.store, f.devices, f.sessions, nil)
	passwords := make([]string, nodes)
	for i := range nodes {
		passwords[i] = f.issue(b, fmt.Sprintf("ESP_%06X", i)).Password
	}
	creds := &current{}
	creds.svc.Store(f.svc)
	e, err := broker.NewEmbedded(broker.Config{
		Addr:        "127.0.0.1:0",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Auth:        broker.AuthDevices,
		Credentials: creds,
		Limits:      broker.Limits{ConnectRate: 1e6, MaxClients: 4 * nodes},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	defer e.Close()

	storm := func(b *testing.B) {
		var wg sync.WaitGroup
		wires := make([]*sim.Wire, nodes)
		errs := make(chan error, nodes)
		for i := range nodes {
			wg.Go(func() {
				id := fmt.Sprintf("ESP_%06X", i)
				w, err := sim.DialWire(e.Addr(), sim.WireOptions{ClientID: id, Username: id, Password: passwords[i]})
				if err != nil {
					errs <- err
					return
				}
				wires[i] = w
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, w := range wires {
			w.Kill()
		}
		b.StartTimer()
	}
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		b.Run(name, func(b *testing.B) {
			var cpu time.Duration
			var compared int64
			for range b.N {
				b.StopTimer()
				svc := New(f.store, f.devices, f.sessions, nil)
				if err := svc.Load(context.Background()); err != nil {
					b.Fatal(err)
				}
				creds.svc.Store(svc)
				if warm {
					storm(b) // fills the cache, not measured
				}
				before, c0 := cpuTime(), svc.compared.Load()
				b.StartTimer()
				storm(b)
				b.StopTimer()
				cpu += cpuTime() - before
				compared += svc.compared.Load() - c0
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/storm")
			b.ReportMetric(float64(compared)/float64(b.N), "bcrypt/storm")
		})
	}
}

// BenchmarkBcryptCompare is one CONNECT's bcrypt comparison at the costs
// considered (docs/decisions/0018-device-credentials.md chose Cost).
func BenchmarkBcryptCompare(b *testing.B) {
	pw := []byte(rand.Text())
	for _, cost := range []int{4, Cost, 8, 10} {
		hash, err := bcrypt.GenerateFromPassword(pw, cost)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("cost=%d", cost), func(b *testing.B) {
			for range b.N {
				if err := bcrypt.CompareHashAndPassword(hash, pw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
