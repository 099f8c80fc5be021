// Package credential issues, stores and checks the devices' MQTT
// credentials for the embedded broker (docs/domain.md §1.2, docs/api.md §6.3):
// a generated password per device, kept only as a bcrypt hash, with a
// bounded cost per CONNECT (docs/decisions/0018-device-credentials.md).
package credential

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Cost is the bcrypt cost of a device password's hash. The passwords are
// generated with 130 bits of entropy, so no work factor is needed against
// guessing; the hash only keeps a copied database from holding working
// passwords, and the cost bounds a CONNECT whose password is not cached
// (3.7 ms on the development machine, docs/BENCHMARKS.md).
const Cost = 6

// maxPassword is the longest password bcrypt compares in full.
const maxPassword = 72

// Devices is what issuing needs from the device registry.
type Devices interface {
	// Status is a device's status, deleted included; ok is false for an
	// id the registry never saw.
	Status(espID string) (status string, ok bool)
	Known(espID string) bool
}

var _ Devices = (*device.Service)(nil)

// Sessions disconnects the broker sessions of a device that did not
// authenticate with the credentials in force.
type Sessions interface {
	Revoke(espID string, keep uint64) int
}

var _ Sessions = (*broker.Embedded)(nil)

// Issued is what the operator is told once: the password is not kept.
type Issued struct {
	DeviceID string
	Username string
	Password string
	// Rotated is true when the device had credentials before.
	Rotated bool
}

// record is one device's credentials in force. Only verified changes.
type record struct {
	hash       []byte
	version    int
	generation uint64
	// verified is the SHA-256 of the last password that matched hash: a
	// reconnect with it costs a digest, not a bcrypt comparison.
	verified atomic.Pointer[[sha256.Size]byte]
}

// Service holds every device's credentials in memory; the broker asks it
// at each CONNECT and never waits for the database.
type Service struct {
	store    store.DeviceCredentials
	devices  Devices
	sessions Sessions
	log      *slog.Logger
	now      func() time.Time

	// issueMu orders issues and removals: a device deleted while its
	// credentials are being issued loses them right after.
	issueMu sync.Mutex

	mu   sync.RWMutex
	byID map[string]*record
	gen  uint64 // last generation handed out; under mu

	// compare bounds the bcrypt comparisons that run at once, so a
	// reconnect storm with cold caches queues instead of taking every core.
	compare chan struct{}
	// compared counts bcrypt comparisons (tests and benchmarks).
	compared atomic.Int64
}

// New builds the service; Load reads the stored credentials.
func New(st store.DeviceCredentials, devices Devices, sessions Sessions, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		store:    st,
		devices:  devices,
		sessions: sessions,
		log:      log,
		now:      time.Now,
		byID:     map[string]*record{},
		compare:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
	}
}

// Load reads the stored credentials. Those of a device the registry no
// longer knows (deleted while the hub stopped between the two commits)
// are removed.
func (s *Service) Load(ctx context.Context) error {
	rows, err := s.store.LoadDeviceCredentials(ctx)
	if err != nil {
		return err
	}
	for _, c := range rows {
		if !s.devices.Known(c.EspID) {
			if err := s.store.DeleteDeviceCredential(ctx, c.EspID); err != nil {
				return fmt.Errorf("remove credentials of deleted device %s: %w", c.EspID, err)
			}
			s.log.Info("credentials of a deleted device removed", "esp_id", c.EspID)
			continue
		}
		s.put(c.EspID, c.PasswordHash, c.Version)
	}
	return nil
}

// put makes hash espID's credentials in force and returns their generation.
func (s *Service) put(espID string, hash []byte, version int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.byID[espID] = &record{hash: hash, version: version, generation: s.gen}
	return s.gen
}

// Issue generates new credentials for a pending or approved device, stores
// the password's hash, and only then makes them the ones in force: every
// session of the device that did not authenticate with them is
// disconnected. A rejected or deleted device gets device.ErrInvalidState,
// an unknown one device.ErrNotFound.
func (s *Service) Issue(ctx context.Context, espID, actor string) (Issued, error) {
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	status, ok := s.devices.Status(espID)
	switch {
	case !ok:
		return Issued{}, device.ErrNotFound
	case status == device.StatusRejected || status == device.StatusDeleted:
		return Issued{}, fmt.Errorf("%w: device %s is %s; credentials are issued for pending or approved devices",
			device.ErrInvalidState, espID, status)
	}

	// 26 characters of A–Z and 2–7: easy to type into the node's portal.
	password := rand.Text()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), Cost)
	if err != nil {
		return Issued{}, fmt.Errorf("hash device password: %w", err)
	}
	s.mu.RLock()
	prev := s.byID[espID]
	s.mu.RUnlock()
	version := 1
	if prev != nil {
		version = prev.version + 1
	}
	if err := s.store.SaveDeviceCredential(ctx, store.DeviceCredential{
		EspID:        espID,
		PasswordHash: hash,
		Version:      version,
		IssuedBy:     actor,
		IssuedAt:     s.now().UTC(),
	}); err != nil {
		return Issued{}, err
	}
	gen := s.put(espID, hash, version)
	if n := s.sessions.Revoke(espID, gen); n > 0 {
		s.log.Info("device sessions without the new credentials disconnected", "esp_id", espID, "sessions", n)
	}
	return Issued{DeviceID: espID, Username: espID, Password: password, Rotated: prev != nil}, nil
}

// Remove deletes a device's credentials (the device was deleted): its
// sessions that authenticated with them are disconnected, and the id may
// connect again only to register.
func (s *Service) Remove(ctx context.Context, espID string) error {
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	s.mu.RLock()
	_, had := s.byID[espID]
	s.mu.RUnlock()
	if !had {
		return nil
	}
	if err := s.store.DeleteDeviceCredential(ctx, espID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.byID, espID)
	s.mu.Unlock()
	s.sessions.Revoke(espID, 0)
	return nil
}

// Has reports whether a device has credentials.
func (s *Service) Has(espID string) bool { return s.Generation(espID) != 0 }

// Generation is the generation of espID's credentials in force, 0 for none.
func (s *Service) Generation(espID string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.byID[espID]; r != nil {
		return r.generation
	}
	return 0
}

// Check verifies a CONNECT for espID (broker.Credentials). An id without
// credentials gets 0 and no error, whatever it presented: such a client
// may only register, and a node whose credentials were removed must still
// be able to. A password that matched before costs a SHA-256; any other
// one bcrypt comparison, at most GOMAXPROCS/2 at a time.
func (s *Service) Check(espID, username string, password []byte) (uint64, error) {
	s.mu.RLock()
	r := s.byID[espID]
	s.mu.RUnlock()
	if r == nil {
		return 0, nil
	}
	if username != espID || len(password) == 0 || len(password) > maxPassword {
		return 0, broker.ErrBadCredentials
	}
	digest := sha256.Sum256(password)
	if v := r.verified.Load(); v != nil && subtle.ConstantTimeCompare(v[:], digest[:]) == 1 {
		return r.generation, nil
	}
	s.compare <- struct{}{}
	err := bcrypt.CompareHashAndPassword(r.hash, password)
	<-s.compare
	s.compared.Add(1)
	if err != nil {
		return 0, broker.ErrBadCredentials
	}
	r.verified.Store(&digest)
	return r.generation, nil
}

var _ broker.Credentials = (*Service)(nil)
