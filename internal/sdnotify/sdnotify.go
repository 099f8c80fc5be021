// Package sdnotify speaks systemd's service notification protocol: READY=1
// once the hub serves, WATCHDOG=1 while it is healthy, STOPPING=1 when it
// drains. Without NOTIFY_SOCKET (not started by systemd) every call is a
// no-op, so the hub runs the same everywhere.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// The states the hub sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notify sends one state line to the service manager. It reports false
// without error when the process was not started with NOTIFY_SOCKET.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	addr := &net.UnixAddr{Name: path, Net: "unixgram"}
	if path[0] == '@' {
		addr.Name = "\x00" + path[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return false, fmt.Errorf("notify %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notify %s: %w", path, err)
	}
	return true, nil
}

// WatchdogInterval is how often the service manager expects WATCHDOG=1
// (half of WatchdogSec, as systemd recommends), or false when no watchdog
// is set for this process.
func WatchdogInterval() (time.Duration, bool) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0, false
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false // meant for another process
	}
	return time.Duration(usec) * time.Microsecond / 2, true
}
