package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func TestNotifySendsTheState(t *testing.T) {
	conn := listen(t)
	for _, state := range []string{Ready, Watchdog, Stopping} {
		sent, err := Notify(state)
		if err != nil || !sent {
			t.Fatalf("%s: sent %v, %v", state, sent, err)
		}
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != state {
			t.Fatalf("received %q, %v; want %q", buf[:n], err, state)
		}
	}
}

func TestNotifyWithoutSystemdIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("sent %v, %v", sent, err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if _, err := Notify(Ready); err == nil {
		t.Fatal("a socket that does not exist is not reported")
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "")
	if _, ok := WatchdogInterval(); ok {
		t.Fatal("a watchdog without WATCHDOG_USEC")
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	if d, ok := WatchdogInterval(); !ok || d != 15*time.Second {
		t.Fatalf("interval %v %v", d, ok)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if _, ok := WatchdogInterval(); ok {
		t.Fatal("another process's watchdog applied to this one")
	}
}
