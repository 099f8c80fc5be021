package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds every wait of these tests for an event that must come;
// it fails the test instead of hanging it and measures nothing.
const waitLimit = 10 * time.Second

// logSink collects the JSON lines a broker writes and tells waiters of each.
type logSink struct {
	mu     sync.Mutex
	lines  []string
	notify chan string
}

func newLogSink() *logSink { return &logSink{notify: make(chan string, 4096)} }

func (s *logSink) Write(p []byte) (int, error) {
	line := string(p)
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
	select {
	case s.notify <- line:
	default:
	}
	return len(p), nil
}

func (s *logSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// with returns the lines containing substr.
func (s *logSink) with(substr string) []string {
	var out []string
	for _, l := range s.all() {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// await waits for a line containing substr.
func (s *logSink) await(t *testing.T, substr string) string {
	t.Helper()
	if l := s.with(substr); len(l) > 0 {
		return l[0]
	}
	deadline := time.After(waitLimit)
	for {
		select {
		case l := <-s.notify:
			if strings.Contains(l, substr) {
				return l
			}
		case <-deadline:
			t.Fatalf("no log line with %q; lines: %q", substr, s.all())
		}
	}
}

// startBroker starts an embedded broker on a free port, logging JSON at
// debug level into the returned sink; adjust may change it before Start.
func startBroker(t *testing.T, cfg Config, adjust ...func(*Embedded)) (*Embedded, *logSink) {
	t.Helper()
	sink := newLogSink()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := NewEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range adjust {
		f(e)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, sink
}

// rawClient speaks MQTT 3.1.1 byte by byte, for what the project's clients
// cannot send: QoS 1 publishes, QoS 1 subscriptions it never acknowledges,
// a declared length it never sends.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func mqttString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func mqttLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// dialRaw connects with a clean session and returns the CONNACK code.
func dialRaw(t *testing.T, addr, clientID string) (*rawClient, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	return connectRaw(t, conn, clientID)
}

// connectRaw sends a clean-session CONNECT on conn and returns the CONNACK code.
func connectRaw(t *testing.T, conn net.Conn, clientID string) (*rawClient, byte) {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	rc := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	rc.send(t, connectPacket(clientID))
	_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(rc.r, ack); err != nil {
		t.Fatalf("connack: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return rc, ack[3]
}

// connectPacket is an MQTT 3.1.1 clean-session CONNECT with a 60 s keepalive.
func connectPacket(clientID string) []byte {
	body := mqttString(nil, "MQTT")
	body = append(body, 4, 0x02, 0, 60)
	body = mqttString(body, clientID)
	return append(mqttLength([]byte{0x10}, len(body)), body...)
}

func (rc *rawClient) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := rc.conn.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func publishPacket(topic string, payload []byte, qos byte, retain bool) []byte {
	h := byte(0x30) | qos<<1
	if retain {
		h |= 1
	}
	body := mqttString(nil, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, 1)
	}
	body = append(body, payload...)
	return append(mqttLength([]byte{h}, len(body)), body...)
}

func subscribePacket(filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = mqttString(body, filter)
	body = append(body, qos)
	return append(mqttLength([]byte{0x82}, len(body)), body...)
}

// awaitClosed reads until the broker closes the connection (a reset
// counts: the broker closes with unread bytes in its buffer).
func (rc *rawClient) awaitClosed(t *testing.T) {
	t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitLimit))
	_, err := io.Copy(io.Discard, rc.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the broker did not close the connection: %v", err)
	}
}

// awaitSuback reads the SUBACK of the one subscription sent.
func (rc *rawClient) awaitSuback(t *testing.T) {
	t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitLimit))
	defer func() { _ = rc.conn.SetReadDeadline(time.Time{}) }()
	ack := make([]byte, 5)
	if _, err := io.ReadFull(rc.r, ack); err != nil || ack[0] != 0x90 || ack[4] > 2 {
		t.Fatalf("suback %x: %v", ack, err)
	}
}
