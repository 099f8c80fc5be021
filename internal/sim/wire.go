// Package sim impersonates El Trabajante firmware nodes on the wire
// (docs/protocol.md §6): a firmware-faithful node for `kaiser sim` and the
// end-to-end tests, and a lean traffic player for benchmarks and the soak
// test, both speaking real MQTT 3.1.1 over TCP.
package sim

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Wire is a minimal MQTT 3.1.1 client: QoS 0 (and QoS 1) publishes into a buffered
// writer, QoS 0 subscriptions, a will. It exists because load generators
// share the hub's two cores: a general client costs microseconds per
// message, this one a fraction of that.
type Wire struct {
	conn    net.Conn
	mu      sync.Mutex
	w       *bufio.Writer
	onMsg   func(topic string, payload []byte)
	done    chan struct{}
	readErr error
	pid     uint16
	subacks chan struct{}
	onAck   func(pid uint16)
}

// WireOptions configure a connection.
type WireOptions struct {
	ClientID    string
	KeepAlive   uint16
	WillTopic   string
	WillPayload []byte
	WillRetain  bool
	WillQoS     byte
	// Username and Password are sent when Username is set (a device's MQTT
	// credentials, docs/protocol.md D1); empty connects anonymously.
	Username string
	Password string
	// OnMessage receives inbound PUBLISH packets (called from the reader goroutine).
	OnMessage func(topic string, payload []byte)
	// TLS, when set, speaks MQTT over TLS; an empty ServerName takes the
	// address's host.
	TLS *tls.Config
	// OnPuback receives the packet id of each PUBACK (PublishQoS1), from
	// the reader goroutine.
	OnPuback func(pid uint16)
}

func putString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func putLen(b []byte, n int) []byte {
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

// DialWire connects and waits for CONNACK.
func DialWire(addr string, o WireOptions) (*Wire, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		if conn, err = clientTLS(conn, addr, o.TLS); err != nil {
			return nil, err
		}
	}
	var body []byte
	body = putString(body, "MQTT")
	flags := byte(0x02) // clean session
	if o.WillTopic != "" {
		flags |= 0x04 | o.WillQoS<<3
		if o.WillRetain {
			flags |= 0x20
		}
	}
	if o.Username != "" {
		flags |= 0xC0 // username and password
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 60
	}
	body = append(body, 4, flags)
	body = binary.BigEndian.AppendUint16(body, o.KeepAlive)
	body = putString(body, o.ClientID)
	if o.WillTopic != "" {
		body = putString(body, o.WillTopic)
		body = binary.BigEndian.AppendUint16(body, uint16(len(o.WillPayload)))
		body = append(body, o.WillPayload...)
	}
	if o.Username != "" {
		body = putString(body, o.Username)
		body = putString(body, o.Password)
	}
	pkt := putLen([]byte{0x10}, len(body))
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("connection refused (code %d)", ack[3])
	}
	_ = conn.SetReadDeadline(time.Time{})
	c := &Wire{
		conn:    conn,
		w:       bufio.NewWriterSize(conn, 64<<10),
		onMsg:   o.OnMessage,
		onAck:   o.OnPuback,
		done:    make(chan struct{}),
		subacks: make(chan struct{}, 16),
	}
	go c.read()
	go c.keepAlive(time.Duration(o.KeepAlive) * time.Second / 2)
	return c, nil
}

// clientTLS completes a TLS handshake on conn within the dial's 5 s.
func clientTLS(conn net.Conn, addr string, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(conn, cfg)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return tc, nil
}

// Publish queues a QoS 0 PUBLISH; Flush sends it.
func (c *Wire) Publish(topic string, payload []byte, retain bool) error {
	h := byte(0x30)
	if retain {
		h |= 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var hdr [8]byte
	b := putLen(append(hdr[:0], h), 2+len(topic)+len(payload))
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	if _, err := c.w.WriteString(topic); err != nil {
		return err
	}
	_, err := c.w.Write(payload)
	return err
}

// PublishQoS1 queues a QoS 1 PUBLISH and returns its packet id, which
// OnPuback reports when the broker acknowledges it; Flush sends it.
func (c *Wire) PublishQoS1(topic string, payload []byte, retain bool) (uint16, error) {
	h := byte(0x32)
	if retain {
		h |= 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pid++
	if c.pid == 0 {
		c.pid = 1
	}
	var hdr [8]byte
	b := putLen(append(hdr[:0], h), 2+len(topic)+2+len(payload))
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	if _, err := c.w.Write(b); err != nil {
		return 0, err
	}
	if _, err := c.w.WriteString(topic); err != nil {
		return 0, err
	}
	if _, err := c.w.Write(binary.BigEndian.AppendUint16(hdr[:0], c.pid)); err != nil {
		return 0, err
	}
	_, err := c.w.Write(payload)
	return c.pid, err
}

// Flush writes buffered packets.
func (c *Wire) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Flush()
}

// Subscribe subscribes at QoS 0 and waits for the SUBACK, so messages
// published after it returns are delivered.
func (c *Wire) Subscribe(filters ...string) error {
	if err := c.sendSubscribe(filters); err != nil {
		return err
	}
	select {
	case <-c.subacks:
		return nil
	case <-c.done:
		return ErrClosed
	case <-time.After(5 * time.Second):
		return errors.New("no SUBACK within 5 s")
	}
}

func (c *Wire) sendSubscribe(filters []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pid++
	var body []byte
	body = binary.BigEndian.AppendUint16(body, c.pid)
	for _, f := range filters {
		body = putString(body, f)
		body = append(body, 0)
	}
	if _, err := c.w.Write(append(putLen([]byte{0x82}, len(body)), body...)); err != nil {
		return err
	}
	return c.w.Flush()
}

// Kill closes TCP without DISCONNECT, so the broker publishes the will (D6).
func (c *Wire) Kill() { c.conn.Close() }

// Done is closed when the connection ends.
func (c *Wire) Done() <-chan struct{} { return c.done }

func (c *Wire) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.mu.Lock()
			_, err := c.w.Write([]byte{0xC0, 0})
			if err == nil {
				err = c.w.Flush()
			}
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

func (c *Wire) read() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		h, err := r.ReadByte()
		if err != nil {
			c.readErr = err
			return
		}
		n, mult := 0, 1
		for {
			d, err := r.ReadByte()
			if err != nil {
				c.readErr = err
				return
			}
			n += int(d&127) * mult
			if d&128 == 0 {
				break
			}
			mult *= 128
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			c.readErr = err
			return
		}
		if h>>4 == 4 && len(body) >= 2 { // PUBACK
			if c.onAck != nil {
				c.onAck(binary.BigEndian.Uint16(body))
			}
			continue
		}
		if h>>4 == 9 { // SUBACK
			select {
			case c.subacks <- struct{}{}:
			default:
			}
			continue
		}
		if h>>4 == 3 && c.onMsg != nil && len(body) >= 2 {
			tl := int(binary.BigEndian.Uint16(body))
			if 2+tl > len(body) {
				continue
			}
			off := 2 + tl
			if (h>>1)&3 > 0 {
				off += 2 // packet id of QoS > 0 deliveries
			}
			if off <= len(body) {
				c.onMsg(string(body[2:2+tl]), body[off:])
			}
		}
	}
}

// ErrClosed reports a closed connection.
var ErrClosed = errors.New("mqtt connection closed")
