package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults of Limits (docs/protocol.md M5, docs/decisions/0012-mqtt-door.md).
const (
	// MinMaxPacket is the smallest packet limit allowed: a 4096-byte device
	// payload, a 256-byte topic and 16 bytes of header, so an oversized
	// device payload stays a counted `oversize` drop in ingest instead of a
	// disconnect (docs/protocol.md M5).
	MinMaxPacket = 4096 + 256 + 16

	DefaultMaxPacket        = 16 << 10
	DefaultMaxClients       = 1000
	DefaultConnectRate      = 50
	DefaultConnectDelay     = 5 * time.Second
	DefaultRetainedMessages = 20000
	DefaultRetainedBytes    = 16 << 20
	DefaultInflight         = 64
	DefaultAckDeadline      = 10 * time.Second

	// connectTimeout bounds how long an accepted TCP connection may take
	// to send its CONNECT; mochi itself waits forever.
	connectTimeout = 10 * time.Second
)

// Limits bound what network clients can make the embedded broker hold.
// Zero values take the defaults. No limit refuses a known device at
// CONNECT or a retained device message (docs/protocol.md M5).
type Limits struct {
	// MaxPacket is the largest MQTT packet read, in bytes; a larger one
	// closes the connection before its body is read. At least MinMaxPacket.
	MaxPacket int
	// MaxClients is the number of sessions (connected or kept for a
	// persistent client) at which a client that is not a known device is
	// refused. The limit in force is at least twice the registered fleet;
	// known devices are never refused by it.
	MaxClients int
	// ConnectRate is CONNECTs per second, with a burst of twice as many.
	// Past it a CONNACK is delayed until the client's turn, by at most
	// ConnectDelay; a client that is not a known device and would wait
	// longer is refused, a known device waits ConnectDelay and is admitted.
	ConnectRate float64
	// ConnectDelay is the longest a CONNACK is delayed.
	ConnectDelay time.Duration
	// RetainedMessages and RetainedBytes (topic + payload) bound the
	// retained store; a retained message beyond them is delivered live and
	// not stored. The hub's own retained messages are always stored.
	RetainedMessages int
	RetainedBytes    int
	// Inflight bounds the QoS 1/2 messages held per client: sent and not yet
	// acknowledged, and received and not yet released.
	Inflight int
	// AckDeadline bounds how long a QoS 1 PUBLISH on a settled
	// subscription waits to be settled (committed or dropped with a counted
	// reason) before its PUBACK; past it the PUBACK is withheld and the
	// client disconnected (docs/protocol.md M3). It covers a full device
	// queue, the handler's deadline (5 s) and the commit.
	AckDeadline time.Duration
	// AllowPrefixes are topic prefixes outside `kaiser/` that clients may
	// publish to; everything else outside the hub's tree is refused.
	AllowPrefixes []string
}

func (l Limits) withDefaults() Limits {
	if l.MaxPacket == 0 {
		l.MaxPacket = DefaultMaxPacket
	}
	if l.MaxClients == 0 {
		l.MaxClients = DefaultMaxClients
	}
	if l.ConnectRate == 0 {
		l.ConnectRate = DefaultConnectRate
	}
	if l.ConnectDelay == 0 {
		l.ConnectDelay = DefaultConnectDelay
	}
	if l.RetainedMessages == 0 {
		l.RetainedMessages = DefaultRetainedMessages
	}
	if l.RetainedBytes == 0 {
		l.RetainedBytes = DefaultRetainedBytes
	}
	if l.Inflight == 0 {
		l.Inflight = DefaultInflight
	}
	if l.AckDeadline == 0 {
		l.AckDeadline = DefaultAckDeadline
	}
	return l
}

// Validate reports the first limit that cannot be used.
func (l Limits) Validate() error {
	l = l.withDefaults()
	switch {
	case l.MaxPacket < MinMaxPacket || l.MaxPacket > 256<<20:
		return fmt.Errorf("max packet %d: must be %d..%d bytes", l.MaxPacket, MinMaxPacket, 256<<20)
	case l.MaxClients < 0:
		return errors.New("max clients must not be negative")
	case l.ConnectRate < 0:
		return errors.New("connect rate must not be negative")
	case l.ConnectDelay < 0:
		return errors.New("connect delay must not be negative")
	case l.RetainedMessages < 0 || l.RetainedBytes < 0:
		return errors.New("retained limits must not be negative")
	case l.Inflight < 0 || l.Inflight > 65535:
		return fmt.Errorf("inflight %d: must be 1..65535", l.Inflight)
	case l.AckDeadline < 0:
		return errors.New("acknowledgement deadline must not be negative")
	}
	for _, p := range l.AllowPrefixes {
		if err := checkPrefix(p); err != nil {
			return err
		}
	}
	return nil
}

// checkPrefix accepts a plain topic prefix outside the hub's tree.
func checkPrefix(p string) error {
	switch {
	case p == "":
		return errors.New("allowed topic prefix must not be empty")
	case strings.HasPrefix(p, "kaiser/") || strings.HasPrefix("kaiser/", p):
		return fmt.Errorf("allowed topic prefix %q: the kaiser/ tree keeps the device write rule", p)
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("allowed topic prefix %q: $ topics belong to the broker", p)
	case strings.ContainsAny(p, "+#\x00"):
		return fmt.Errorf("allowed topic prefix %q: no wildcards or NUL", p)
	}
	return nil
}

// bucket is a token bucket over CONNECTs that lends: a CONNECT past the
// burst waits for its token, as long as the debt stays within floor (the
// longest delay). Past that a known device still waits the longest delay
// and is admitted; anyone else is refused.
type bucket struct {
	mu       sync.Mutex
	rate     float64 // tokens per second
	burst    float64
	floor    float64 // lowest level: the debt of delayed CONNECTs
	maxDelay time.Duration
	tokens   float64
	last     time.Time
}

func newBucket(rate float64, maxDelay time.Duration) *bucket {
	return &bucket{
		rate:     rate,
		burst:    2 * rate,
		floor:    -rate * maxDelay.Seconds(),
		maxDelay: maxDelay,
		tokens:   2 * rate,
	}
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
}

// reserve takes a token now or later and returns how long to wait for it.
// ok is false when the wait would pass the longest delay and the CONNECT
// is not known's; a known one then waits the longest delay.
func (b *bucket) reserve(now time.Time, known bool) (wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens-1 < b.floor {
		if !known {
			return 0, false
		}
		b.tokens = b.floor
		return b.maxDelay, true
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0, true
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second)), true
}
