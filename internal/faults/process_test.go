package faults

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kaiserBin is the kaiser binary TestMain builds for the suite.
var kaiserBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kaiser-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kaiserBin = filepath.Join(dir, "kaiser")
	build := exec.Command("go", "build", "-o", kaiserBin, "github.com/kaiserhub/kaiser/cmd/kaiser")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kaiser:", err)
		return 1
	}
	return m.Run()
}

// hub is one `kaiser serve` process of the suite.
type hub struct {
	t      *testing.T
	dir    string
	http   string
	mqtt   string
	args   []string
	cmd    *exec.Cmd
	out    *os.File
	exited chan struct{}
}

// startHub runs `kaiser serve` on dir with free ports and extra flags, and
// waits until it answers ready.
func startHub(t *testing.T, dir string, args ...string) *hub {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the kaiser binary")
	}
	h := &hub{t: t, dir: dir, http: freeAddr(t), mqtt: freeAddr(t), args: args}
	h.start()
	return h
}

func (h *hub) start() {
	h.t.Helper()
	args := append([]string{"serve",
		"--data-dir", h.dir,
		"--http-addr", h.http,
		"--mqtt-addr", h.mqtt,
	}, h.args...)
	h.cmd = exec.Command(kaiserBin, args...)
	h.cmd.Stdout, h.cmd.Stderr = h.console(), h.console()
	h.exited = make(chan struct{})
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := h.exited
	go func() { _ = h.cmd.Wait(); close(exited) }()
	h.t.Cleanup(h.kill)
	h.awaitReady(20 * time.Second)
}

// console is the file the hub's console output goes to; a failed test
// shows its end.
func (h *hub) console() *os.File {
	h.t.Helper()
	if h.out != nil {
		return h.out
	}
	f, err := os.CreateTemp(h.t.TempDir(), "console-*.log")
	if err != nil {
		h.t.Fatal(err)
	}
	h.out = f
	h.t.Cleanup(func() {
		defer f.Close()
		if !h.t.Failed() {
			return
		}
		raw, _ := os.ReadFile(f.Name())
		if len(raw) > 8<<10 {
			raw = raw[len(raw)-8<<10:]
		}
		h.t.Logf("end of the hub's console output:\n%s", raw)
	})
	return f
}

// awaitReady waits until /health/ready answers 200.
func (h *hub) awaitReady(within time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if h.ready() == http.StatusOK {
			return
		}
		select {
		case <-h.exited:
			h.t.Fatal("the hub process exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the hub was not ready within %s", within)
		}
	}
}

// ready is the status of /health/ready, 0 when the hub does not answer.
func (h *hub) ready() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+h.http+"/api/v1/health/ready", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// alive reports whether the process still runs.
func (h *hub) alive() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL and waits until it is gone.
func (h *hub) kill() { h.signal(syscall.SIGKILL) }

// stop ends the process with SIGTERM, its orderly shutdown, and waits.
func (h *hub) stop() { h.signal(syscall.SIGTERM) }

func (h *hub) signal(sig syscall.Signal) {
	if !h.alive() {
		return
	}
	if err := h.cmd.Process.Signal(sig); err != nil {
		h.t.Errorf("%v: %v", sig, err)
	}
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
		h.t.Errorf("the hub did not end within 60 s of %v", sig)
	}
}

// restart starts the hub again on the same data directory and ports.
func (h *hub) restart() {
	h.t.Helper()
	h.kill()
	h.start()
}

// rss is the process's resident set in bytes, from /proc.
func (h *hub) rss() int64 {
	h.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", h.cmd.Process.Pid))
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), 10, 64)
		if err != nil {
			h.t.Fatalf("VmRSS %q: %v", kb, err)
		}
		return n << 10
	}
	h.t.Fatal("no VmRSS in /proc status")
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
