// Package tlscert holds the hub's TLS certificate: read from a certificate
// file and a key file, shared by the HTTPS and the MQTT-over-TLS listeners,
// and read again on request (SIGHUP) or when the files change, without
// dropping a connection (docs/decisions/0019-tls.md).
package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MinVersion is the oldest TLS version the listeners speak. TLS 1.2 is
// what ESP32 firmware's mbedTLS offers; older versions are broken.
const MinVersion = tls.VersionTLS12

// expiryWarning is how close to its end a loaded certificate is warned about.
const expiryWarning = 14 * 24 * time.Hour

// Source is the current certificate of one certificate and key file pair.
// A failed reload keeps the certificate in use: a half-written renewal
// never takes the listeners down.
type Source struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	cert atomic.Pointer[tls.Certificate]

	// mu serialises loads; seen is the files' stamp at the last attempt,
	// so a change is tried once, not on every handshake.
	mu   sync.Mutex
	seen stamp

	reloads *prometheus.CounterVec
}

// stamp identifies a version of the two files.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// Load reads the pair; an error names the files and what is wrong with them.
// log receives the reloads and warnings; nil: slog.Default.
func Load(certFile, keyFile string, log *slog.Logger) (*Source, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are both needed")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Source{
		certFile: certFile,
		keyFile:  keyFile,
		log:      log,
		now:      time.Now,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaiser_tls_certificate_reloads_total",
			Help: "Reads of the TLS certificate and key files after the first, by result (loaded, failed).",
		}, []string{"result"}),
	}
	st, err := s.stat()
	if err != nil {
		return nil, err
	}
	s.seen = st
	if err := s.load("start"); err != nil {
		return nil, err
	}
	s.warnKeyMode()
	return s, nil
}

// Files are the certificate and key file names.
func (s *Source) Files() (certFile, keyFile string) { return s.certFile, s.keyFile }

// Leaf is the certificate in use.
func (s *Source) Leaf() *x509.Certificate { return s.cert.Load().Leaf }

// Reload reads the files again now (SIGHUP). On an error the certificate in
// use stays.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, err := s.stat(); err == nil {
		s.seen = st
	}
	return s.reload("signal")
}

// TLSConfig is a server configuration serving the current certificate,
// TLS 1.2 at least, Go's default cipher suites. Each call returns a new
// configuration; they share the certificate.
func (s *Source) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     MinVersion,
		GetCertificate: s.getCertificate,
	}
}

// Register adds the certificate's metrics to reg.
func (s *Source) Register(reg prometheus.Registerer) {
	reg.MustRegister(s.reloads, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kaiser_tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate in use expires (Unix seconds).",
	}, func() float64 { return float64(s.Leaf().NotAfter.Unix()) }))
}

// getCertificate serves every handshake; it first looks whether the files
// changed (two stat calls, next to a handshake's milliseconds) and loads
// them once per change.
func (s *Source) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	if st, err := s.stat(); err == nil && st != s.seen {
		s.seen = st
		_ = s.reload("file change")
	}
	s.mu.Unlock()
	return s.cert.Load(), nil
}

// reload loads the files and counts and logs the outcome; s.mu is held.
func (s *Source) reload(why string) error {
	if err := s.load(why); err != nil {
		s.reloads.WithLabelValues("failed").Inc()
		s.log.Warn("TLS certificate not reloaded; the previous one stays in use",
			"trigger", why, "cert_file", s.certFile, "key_file", s.keyFile, "error", err)
		return err
	}
	s.reloads.WithLabelValues("loaded").Inc()
	return nil
}

func (s *Source) load(why string) error {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate %s with key %s: %w", s.certFile, s.keyFile, err)
	}
	leaf := c.Leaf
	if leaf == nil { // LoadX509KeyPair fills it; keep the gauge safe regardless
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("tls certificate %s: %w", s.certFile, err)
		}
		c.Leaf = leaf
	}
	s.cert.Store(&c)
	now := s.now()
	attrs := []any{"trigger", why, "cert_file", s.certFile, "subject", leaf.Subject.String(),
		"dns_names", leaf.DNSNames, "ip_addresses", len(leaf.IPAddresses),
		"not_before", leaf.NotBefore.UTC(), "not_after", leaf.NotAfter.UTC()}
	// A Raspberry Pi without a real-time clock boots in the past: a
	// certificate outside its period is a warning, never a refusal.
	switch {
	case now.After(leaf.NotAfter):
		s.log.Warn("TLS certificate has expired: clients that check it will refuse it", attrs...)
	case now.Before(leaf.NotBefore):
		s.log.Warn("TLS certificate is not valid yet (or the clock is behind)", attrs...)
	case leaf.NotAfter.Sub(now) < expiryWarning:
		s.log.Warn("TLS certificate expires soon", attrs...)
	default:
		s.log.Info("TLS certificate loaded", attrs...)
	}
	return nil
}

func (s *Source) stat() (stamp, error) {
	c, err := os.Stat(s.certFile)
	if err != nil {
		return stamp{}, fmt.Errorf("tls certificate file: %w", err)
	}
	k, err := os.Stat(s.keyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("tls key file: %w", err)
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// warnKeyMode warns about a private key that every local user can read.
func (s *Source) warnKeyMode() {
	if fi, err := os.Stat(s.keyFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
		s.log.Warn("TLS key file is readable by every user; chmod 600 or 640 it",
			"key_file", s.keyFile, "mode", fi.Mode().Perm().String())
	}
}
