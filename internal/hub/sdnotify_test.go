package hub

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// Started by systemd (NOTIFY_SOCKET, WATCHDOG_USEC), the hub says READY=1
// once it serves, pings the watchdog while its store commits, and says
// STOPPING=1 before it drains.
func TestRunNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000") // pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			DataDir:  t.TempDir(),
			HTTPAddr: "127.0.0.1:0",
			MQTTAddr: "127.0.0.1:0",
		})
	}()

	next := func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q", got)
	}
	if got := next(); got != "WATCHDOG=1" {
		t.Fatalf("second notification %q", got)
	}

	cancel()
	for {
		got := next()
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q", got)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
