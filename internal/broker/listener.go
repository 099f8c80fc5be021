package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// doorListener is the TCP listener with the door's rules around mochi's
// per-connection handling: a connection must send its CONNECT within
// connectTimeout, and how each connection ended is logged once, by the
// broker, in a bounded line (mochi's listener logs every ended connection
// with an empty message, and a refused one a second time).
type doorListener struct {
	*listeners.TCP
	e *Embedded
	// tls, when set, makes this the MQTT-over-TLS listener: each connection
	// completes its handshake before mochi sees it (tls.go).
	tls *tls.Config
	// conns maps an established connection to its client id, for the line
	// about a connection closed for an oversized packet. The TLS listener
	// shares the plain one's map: the hook records every session there.
	conns *sync.Map // net.Conn → string
}

func newDoorListener(e *Embedded, id, addr string, tlsConf *tls.Config) *doorListener {
	return &doorListener{
		TCP:   listeners.NewTCP(listeners.Config{ID: id, Address: addr}),
		e:     e,
		tls:   tlsConf,
		conns: &sync.Map{},
	}
}

// Serve hands each accepted connection to mochi under a CONNECT deadline;
// mochi replaces the deadline with the keepalive's once the CONNECT is read.
// On the TLS listener the handshake comes first, under the same deadline.
func (l *doorListener) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) error {
		deadline := time.Now().Add(l.e.connectTimeout)
		if l.tls != nil {
			tc, ok := l.handshake(c, deadline)
			if !ok {
				return nil
			}
			c = tc
		}
		_ = c.SetReadDeadline(deadline)
		done := make(chan struct{})
		l.e.attached.Store(c, done)
		err := establish(id, c)
		l.e.turns.end(c)
		l.e.attached.Delete(c)
		close(done)
		clientID, _ := l.conns.LoadAndDelete(c)
		l.ended(c, clientID, err)
		return nil // logged here; mochi's listener would log it again
	})
}

// established records the client id of a connection whose session began.
func (l *doorListener) established(c net.Conn, clientID string) {
	if c != nil {
		l.conns.Store(c, clientID)
	}
}

// ended logs and counts how a connection ended.
func (l *doorListener) ended(c net.Conn, clientID any, err error) {
	var id string
	if s, ok := clientID.(string); ok {
		id = s
	}
	remote := ""
	if a := c.RemoteAddr(); a != nil {
		remote = a.String()
	}
	switch {
	case err == nil:
	case errors.Is(err, packets.ErrPacketTooLarge):
		l.e.refused.WithLabelValues(refusedPacketTooLarge).Inc()
		l.e.log.Warn("mqtt packet over the limit: connection closed before reading it",
			"client_id", id,
			"remote", remote,
			"max_packet_bytes", l.e.limits.MaxPacket)
	case l.e.refusedHere(err):
		// The hook logged and counted the refusal.
	case id == "" && isTimeout(err):
		l.e.refused.WithLabelValues(refusedConnectTimeout).Inc()
		l.e.log.Warn("mqtt connection closed: no CONNECT in time",
			"remote", remote,
			"timeout", l.e.connectTimeout)
	case isConnectionEnd(err):
		l.e.log.Debug("mqtt connection ended", "client_id", id, "remote", remote, "error", err)
	default:
		l.e.log.Warn("mqtt connection ended with an error", "client_id", id, "remote", remote, "error", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnectionEnd reports the ordinary ways a client goes: closed, reset,
// timed out.
func isConnectionEnd(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne)
}
