package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// refusedTLSHandshake counts connections to the TLS listener whose
// handshake failed: a plain MQTT client, an old TLS version, a client that
// does not trust the certificate.
const refusedTLSHandshake = "tls_handshake"

// addTLSListener adds the MQTT-over-TLS listener next to the plain one
// (docs/decisions/0019-tls.md). It is the same door: the hook, the connect
// rate, the client and packet limits and the CONNECT deadline are the
// broker's, whichever listener a client came through.
func (e *Embedded) addTLSListener() error {
	if e.cfg.TLSAddr == "" {
		return nil
	}
	if e.cfg.TLS == nil {
		return fmt.Errorf("mqtt tls listener %s: no certificate configured", e.cfg.TLSAddr)
	}
	l := newDoorListener(e, "tls", e.cfg.TLSAddr, e.cfg.TLS)
	l.conns = e.listener.conns
	if err := e.server.AddListener(l); err != nil {
		return fmt.Errorf("mqtt tls listener %s: %w", e.cfg.TLSAddr, err)
	}
	e.tlsListener = l
	e.tlsAddr.Store(l.Address())
	return nil
}

// Protocol names the listener's protocol in mochi's log lines.
func (l *doorListener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

// TLSAddr is the bound address of the MQTT-over-TLS listener; "" when there
// is none.
func (e *Embedded) TLSAddr() string { return e.tlsAddr.Load().(string) }

// handshake completes the TLS handshake of c by deadline. A failed one
// closes c and is logged and counted once: silence until the deadline as a
// connect timeout, a client that hung up as an ordinary end, anything else
// as a refused handshake.
func (l *doorListener) handshake(c net.Conn, deadline time.Time) (*tls.Conn, bool) {
	tc := tls.Server(c, l.tls)
	_ = c.SetDeadline(deadline)
	err := tc.Handshake()
	if err == nil {
		_ = c.SetWriteDeadline(time.Time{})
		return tc, true
	}
	_ = c.Close()
	remote := ""
	if a := c.RemoteAddr(); a != nil {
		remote = a.String()
	}
	var rh tls.RecordHeaderError
	switch {
	case isTimeout(err):
		l.e.refused.WithLabelValues(refusedConnectTimeout).Inc()
		l.e.log.Warn("mqtt connection closed: no TLS handshake in time",
			"remote", remote,
			"timeout", l.e.connectTimeout)
	case errors.As(err, &rh):
		l.e.refused.WithLabelValues(refusedTLSHandshake).Inc()
		l.e.log.Warn("mqtt connection closed: not TLS on the TLS port (plain MQTT belongs on the plain listener)",
			"remote", remote,
			"addr", l.Address())
	case hungUp(err):
		l.e.log.Debug("mqtt connection ended during the TLS handshake", "remote", remote, "error", err)
	default:
		l.e.refused.WithLabelValues(refusedTLSHandshake).Inc()
		l.e.log.Warn("mqtt TLS handshake failed", "remote", remote, "error", err)
	}
	return nil, false
}

// hungUp reports a client that went away during the handshake. A TLS alert
// the client sent is a net.Error too, but a refusal (it did not trust the
// certificate), so isConnectionEnd does not do here.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET)
}
