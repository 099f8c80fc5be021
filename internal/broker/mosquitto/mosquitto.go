// Package mosquitto runs a real Mosquitto broker for the tests of the hub's
// external broker mode (docs/decisions/0023-external-broker.md): each test
// starts its own `mosquitto -c <generated conf>` on a free port and can
// restart or stop it. Without the binary the test is skipped, unless CI=true,
// where a missing broker is a failure (scripts/test installs it).
package mosquitto

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options shape the generated configuration.
type Options struct {
	// Users, when set, switches anonymous access off: a password file with
	// these user names and passwords is generated (mosquitto_passwd).
	Users map[string]string
	// TLS, when set, makes the listener TLS-only with these PEM files;
	// RequireCertificate asks every client for a certificate signed by CA.
	TLS *TLSFiles
	// Nagle keeps Mosquitto's default of Nagle's algorithm on its sockets;
	// otherwise the broker sets TCP_NODELAY (set_tcp_nodelay), as a
	// deployment should: with Nagle every round trip through the broker
	// waits about 40 ms for a delayed ACK (docs/BENCHMARKS.md).
	Nagle bool
	// Extra lines are appended to the configuration.
	Extra []string
}

// TLSFiles are the PEM files of a TLS listener.
type TLSFiles struct {
	CA, Cert, Key      string
	RequireCertificate bool
}

// Broker is one running Mosquitto.
type Broker struct {
	t    testing.TB
	bin  string
	conf string
	// Port is the listener's port on 127.0.0.1, the same across restarts.
	Port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *lines
}

// Binary finds mosquitto (Debian installs it in /usr/sbin, which is not
// always on a test's PATH); "" when it is not installed.
func Binary() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start starts a broker for t and stops it when t ends. Without the binary
// t is skipped, or failed when CI=true.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is not installed (apt-get install -y mosquitto); CI=true requires it")
		}
		t.Skip("mosquitto is not installed: apt-get install -y mosquitto to run the external broker tests")
	}
	dir := t.TempDir()
	b := &Broker{t: t, bin: bin, Port: freePort(t)}
	b.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(b.config(dir, opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Restart()
	t.Cleanup(b.Stop)
	return b
}

// Addr is host:port of the listener.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// URL is the broker's URL for the hub (mqtt:// or, with TLS, mqtts://).
func (b *Broker) URL(tls bool) string {
	if tls {
		return "mqtts://" + b.Addr()
	}
	return "mqtt://" + b.Addr()
}

func (b *Broker) config(dir string, opts Options) string {
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", b.Port),
		"persistence false",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
		"user root", // stays the test's user; as root it would drop to "mosquitto" and lose the temp files
	}
	if !opts.Nagle {
		lines = append(lines, "set_tcp_nodelay true")
	}
	if len(opts.Users) == 0 {
		lines = append(lines, "allow_anonymous true")
	} else {
		pw := filepath.Join(dir, "passwords")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			b.t.Fatal(err)
		}
		for user, pass := range opts.Users {
			if out, err := exec.Command("mosquitto_passwd", "-b", pw, user, pass).CombinedOutput(); err != nil {
				b.t.Fatalf("mosquitto_passwd (package mosquitto): %v: %s", err, out)
			}
		}
		lines = append(lines, "allow_anonymous false", "password_file "+pw)
	}
	if f := opts.TLS; f != nil {
		lines = append(lines, "cafile "+f.CA, "certfile "+f.Cert, "keyfile "+f.Key)
		if f.RequireCertificate {
			lines = append(lines, "require_certificate true")
		}
	}
	lines = append(lines, opts.Extra...)
	return strings.Join(lines, "\n") + "\n"
}

// Restart starts the broker again on the same port (after Stop or Kill),
// and waits until it accepts connections.
func (b *Broker) Restart() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		b.t.Fatal("mosquitto is running")
	}
	cmd := exec.Command(b.bin, "-c", b.conf)
	dieWithTest(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.log = &lines{}
	go b.log.read(stderr)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.cmd, b.done = cmd, done
	b.waitListening()
}

// waitListening waits (bounded) until the listener accepts a connection;
// b.mu is held.
func (b *Broker) waitListening() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", b.Addr())
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.done:
			b.cmd = nil
			b.t.Fatalf("mosquitto exited at start:\n%s", b.log)
		case <-ctx.Done():
			b.t.Fatalf("mosquitto not listening on %s within 10 s: %v\n%s", b.Addr(), err, b.log)
		case <-time.After(20 * time.Millisecond): // the next connection attempt
		}
	}
}

// Stop ends the broker with SIGTERM (its clients see the connection
// close) and waits for it; it is a no-op when it is not running.
func (b *Broker) Stop() { b.end(syscall.SIGTERM) }

// Kill ends the broker with SIGKILL.
func (b *Broker) Kill() { b.end(syscall.SIGKILL) }

func (b *Broker) end(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Log is what the broker wrote since its last start.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lines collects the broker's log.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.b.WriteString(sc.Text() + "\n")
		l.mu.Unlock()
	}
}

func (l *lines) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
