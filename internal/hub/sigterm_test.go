package hub

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SIGTERM while devices publish: the process exits 0 within 5 s and every
// heartbeat the broker acknowledged (PUBACK) before the signal is stored.
func TestSIGTERMUnderLoadLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "kaiser")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/kaiser")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve",
		"--data-dir", dir,
		"--http-addr", httpAddr,
		"--mqtt-addr", mqttAddr,
		"--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("hub not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	const devices = 50
	acked := make([][]int64, devices)
	var wg sync.WaitGroup
	running := make(chan struct{})
	var once sync.Once
	for i := 0; i < devices; i++ {
		c := mustDial(t, mqttAddr, fmt.Sprintf("ESP_%06X", i))
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			topic := contract.DeviceTopic("god", fmt.Sprintf("ESP_%06X", i), "system/heartbeat")
			for n := int64(1); ; n++ {
				if err := c.publish(topic, heartbeat(int(n)), false); err != nil {
					return // the hub is going down
				}
				acked[i] = append(acked[i], n)
				if n == 20 {
					once.Do(func() { close(running) })
				}
			}
		}(i, c)
	}
	<-running
	time.Sleep(300 * time.Millisecond) // let load build up before the signal
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hub did not exit within 5 s of SIGTERM")
	}
	took := time.Since(sent)
	wg.Wait()

	st, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	total := 0
	for i := 0; i < devices; i++ {
		ups, err := st.HeartbeatUptimes(context.Background(), fmt.Sprintf("ESP_%06X", i))
		if err != nil {
			t.Fatal(err)
		}
		stored := map[int64]bool{}
		for _, u := range ups {
			stored[u] = true
		}
		for _, n := range acked[i] {
			if !stored[n] {
				t.Fatalf("device %d: acknowledged heartbeat %d not stored (%d stored, %d acked)", i, n, len(ups), len(acked[i]))
			}
		}
		total += len(acked[i])
	}
	t.Logf("SIGTERM → exit in %s; %d acknowledged heartbeats all stored", took, total)
}
