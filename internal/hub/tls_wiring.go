package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/kaiserhub/kaiser/internal/tlscert"
)

// CheckTLS reports a TLS configuration Start would refuse, with the
// certificate loaded once to see that it can be: a TLS listener without a
// certificate that loads, a certificate no listener would use, MQTT over TLS
// on port 8883. The hub never runs believed encrypted while it is not.
func (c Config) CheckTLS() error {
	on, err := c.tlsWanted()
	if err != nil || !on {
		return err
	}
	_, err = tlscert.Load(c.TLSCertFile, c.TLSKeyFile, slog.New(slog.DiscardHandler))
	return err
}

// tlsWanted reports whether a TLS listener is asked for, and a
// configuration that does not fit.
func (c Config) tlsWanted() (bool, error) {
	wantTLS := c.HTTPSAddr != "" || c.MQTTTLSAddr != ""
	haveFiles := c.TLSCertFile != "" || c.TLSKeyFile != ""
	switch {
	case !wantTLS && !haveFiles:
		return false, nil
	case !wantTLS:
		return false, errors.New("tls certificate given but no TLS listener asked for (HTTPS address, MQTT TLS address)")
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		return false, errors.New("a TLS listener needs both a certificate file and a key file")
	}
	return true, CheckMQTTTLSAddr(c.MQTTTLSAddr)
}

// listenHTTPS loads the certificate when a TLS listener is asked for and
// opens the HTTPS listener (docs/decisions/0019-tls.md); CheckTLS says what
// it refuses.
func (h *Hub) listenHTTPS() error {
	c := h.cfg
	on, err := c.tlsWanted()
	if err != nil || !on {
		return err
	}
	h.TLS, err = tlscert.Load(c.TLSCertFile, c.TLSKeyFile, h.Log.With("component", "tls"))
	if err != nil {
		return err
	}
	h.TLS.Register(h.Registry)
	if c.HTTPSAddr == "" {
		return nil
	}
	h.httpsLn, err = net.Listen("tcp", c.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("https listen %s: %w", c.HTTPSAddr, err)
	}
	return nil
}

// CheckMQTTTLSAddr refuses port 8883 for MQTT over TLS: baseline firmware
// tries plain MQTT there first and falls back to 1883 only when the
// connect fails (docs/protocol.md §1.5); a TLS listener on 8883 would turn
// every such node's first attempt into a failed handshake.
func CheckMQTTTLSAddr(addr string) error {
	if addr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "8883" {
		return fmt.Errorf("mqtt tls address %s: not port 8883, where baseline nodes try plain MQTT first; use 8884", addr)
	}
	return nil
}

// tlsConfig is a server configuration with the hub's certificate; nil
// without one.
func (h *Hub) tlsConfig() *tls.Config {
	if h.TLS == nil {
		return nil
	}
	return h.TLS.TLSConfig()
}

// httpsConfig is tlsConfig offering HTTP/2. Naming h2 is what makes
// http.Server set HTTP/2 up whichever of Serve (plain) and ServeTLS runs
// first; without it a plain Serve that wins the race leaves HTTP/2 off while
// ServeTLS still offers it, and every HTTP/2 client's connection is closed.
func (h *Hub) httpsConfig() *tls.Config {
	c := h.tlsConfig()
	if c != nil {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c
}

// serveHTTPS serves the same handler, with the same timeouts, on the HTTPS
// listener as on the plain one: one http.Server serves both, and its
// Shutdown drains both.
func (h *Hub) serveHTTPS() {
	if h.httpsLn == nil {
		return
	}
	go func() { h.httpErr <- h.httpSrv.ServeTLS(h.httpsLn, "", "") }()
}

// reloadTLS reads the certificate files again (SIGHUP). The source logs
// the outcome; a failure keeps the certificate in use.
func (h *Hub) reloadTLS() {
	if h.TLS == nil {
		h.Log.Info("reload asked for: no TLS certificate configured, nothing to reload")
		return
	}
	_ = h.TLS.Reload()
}

// HTTPSAddr is the bound HTTPS address; "" without one.
func (h *Hub) HTTPSAddr() string {
	if h.httpsLn == nil {
		return ""
	}
	return h.httpsLn.Addr().String()
}

// MQTTTLSAddr is the bound MQTT-over-TLS address; "" without one (or
// with an external broker).
func (h *Hub) MQTTTLSAddr() string {
	if h.Broker == nil {
		return ""
	}
	return h.Broker.TLSAddr()
}
