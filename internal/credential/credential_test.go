package credential

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kaiserhub/kaiser/internal/broker"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// registry is the device statuses the service asks about.
type registry struct {
	mu sync.Mutex
	st map[string]string
}

func (r *registry) Status(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.st[id]
	return s, ok
}

func (r *registry) Known(id string) bool {
	s, ok := r.Status(id)
	return ok && s != device.StatusDeleted
}

func (r *registry) set(id, status string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st[id] = status
}

// revocations records what the broker was asked to disconnect.
type revocations struct {
	mu   sync.Mutex
	last map[string]uint64
	n    int
}

func (r *revocations) Revoke(id string, keep uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[id] = keep
	r.n++
	return 0
}

func (r *revocations) of(id string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.last[id]
	return k, ok
}

type fixture struct {
	dir      string
	store    *sqlite.Store
	devices  *registry
	sessions *revocations
	svc      *Service
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		dir: t.TempDir(),
		devices: &registry{st: map[string]string{
			"ESP_PEND01": device.StatusPending,
			"ESP_ONLN01": device.StatusOnline,
			"ESP_REJD01": device.StatusRejected,
			"ESP_DELD01": device.StatusDeleted,
		}},
		sessions: &revocations{last: map[string]uint64{}},
	}
	f.open(t)
	return f
}

// open (re)opens the store and a service over it, as a hub start does.
func (f *fixture) open(t testing.TB) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), f.dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.store = st
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	f.svc = New(st, f.devices, f.sessions, nil)
	if err := f.svc.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) issue(t testing.TB, id string) Issued {
	t.Helper()
	c, err := f.svc.Issue(context.Background(), id, "ana")
	if err != nil {
		t.Fatalf("issue %s: %v", id, err)
	}
	return c
}

// Credentials are issued for pending and approved devices only; the
// password is shown once, checks against its hash, and a device without
// credentials may connect with anything (it may only register).
func TestIssueAndCheck(t *testing.T) {
	f := newFixture(t)
	for id, want := range map[string]error{
		"ESP_REJD01": device.ErrInvalidState,
		"ESP_DELD01": device.ErrInvalidState,
		"ESP_NONE01": device.ErrNotFound,
	} {
		if _, err := f.svc.Issue(context.Background(), id, "ana"); !errors.Is(err, want) {
			t.Errorf("issue %s: %v, want %v", id, err, want)
		}
	}
	if gen, err := f.svc.Check("ESP_PEND01", "", nil); gen != 0 || err != nil {
		t.Fatalf("no credentials yet: %d %v", gen, err)
	}

	c := f.issue(t, "ESP_PEND01")
	if c.Username != "ESP_PEND01" || c.DeviceID != "ESP_PEND01" || len(c.Password) != 26 || c.Rotated {
		t.Fatalf("issued %+v", c)
	}
	if k, ok := f.sessions.of("ESP_PEND01"); !ok || k != f.svc.Generation("ESP_PEND01") || k == 0 {
		t.Fatalf("sessions of the device not revoked for the new credentials: %d %v", k, ok)
	}
	gen, err := f.svc.Check("ESP_PEND01", "ESP_PEND01", []byte(c.Password))
	if err != nil || gen != f.svc.Generation("ESP_PEND01") {
		t.Fatalf("right password: %d %v", gen, err)
	}
	for _, bad := range []struct{ user, pw string }{
		{"ESP_PEND01", "WRONG"}, {"ESP_PEND01", ""}, {"ESP_ONLN01", c.Password}, {"", c.Password},
		{"ESP_PEND01", strings.Repeat("A", 100)},
	} {
		if _, err := f.svc.Check("ESP_PEND01", bad.user, []byte(bad.pw)); !errors.Is(err, broker.ErrBadCredentials) {
			t.Errorf("user %q password %q: %v", bad.user, bad.pw, err)
		}
	}
	if c2 := f.issue(t, "ESP_ONLN01"); c2.Password == c.Password {
		t.Fatal("two devices got the same password")
	}
}

// A reconnect with the password that matched before costs no bcrypt
// comparison; a rotation drops that cache with the old hash, so the old
// password stops working at once.
func TestRotationInvalidatesTheCachedPassword(t *testing.T) {
	f := newFixture(t)
	old := f.issue(t, "ESP_ONLN01")
	for range 3 {
		if _, err := f.svc.Check("ESP_ONLN01", "ESP_ONLN01", []byte(old.Password)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.svc.compared.Load(); n != 1 {
		t.Fatalf("%d bcrypt comparisons for three connects with one password, want 1", n)
	}
	oldGen := f.svc.Generation("ESP_ONLN01")

	rotated := f.issue(t, "ESP_ONLN01")
	if !rotated.Rotated || rotated.Password == old.Password {
		t.Fatalf("rotation %+v", rotated)
	}
	if _, err := f.svc.Check("ESP_ONLN01", "ESP_ONLN01", []byte(old.Password)); !errors.Is(err, broker.ErrBadCredentials) {
		t.Fatalf("old password after the rotation: %v", err)
	}
	gen, err := f.svc.Check("ESP_ONLN01", "ESP_ONLN01", []byte(rotated.Password))
	if err != nil || gen == oldGen {
		t.Fatalf("new password: generation %d (old %d), %v", gen, oldGen, err)
	}
	if k, _ := f.sessions.of("ESP_ONLN01"); k != gen {
		t.Fatalf("sessions revoked keeping generation %d, want %d", k, gen)
	}
}

// The hash, not the password, is what the control database holds, and it
// survives a restart; credentials of a device deleted while the hub was
// down are removed at load, and Remove takes them for good.
func TestCredentialsPersistOnlyAsHash(t *testing.T) {
	f := newFixture(t)
	a := f.issue(t, "ESP_PEND01")
	b := f.issue(t, "ESP_ONLN01")
	if err := f.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, err := f.store.LoadDeviceCredentials(context.Background())
	if err != nil || len(rows) != 2 || !bytes.HasPrefix(rows[0].PasswordHash, []byte("$2a$06$")) ||
		rows[0].IssuedBy != "ana" || rows[0].Version != 1 {
		t.Fatalf("stored rows %+v: %v", rows, err)
	}
	files, _ := filepath.Glob(filepath.Join(f.dir, "*"))
	for _, p := range files {
		raw, _ := os.ReadFile(p)
		if bytes.Contains(raw, []byte(a.Password)) || bytes.Contains(raw, []byte(b.Password)) {
			t.Fatalf("%s holds a password in plain text", filepath.Base(p))
		}
	}

	f.devices.set("ESP_ONLN01", device.StatusDeleted)
	_ = f.store.Close(context.Background())
	f.open(t)
	if _, err := f.svc.Check("ESP_PEND01", "ESP_PEND01", []byte(a.Password)); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if f.svc.Has("ESP_ONLN01") {
		t.Fatal("a deleted device's credentials were loaded")
	}

	if err := f.svc.Remove(context.Background(), "ESP_PEND01"); err != nil {
		t.Fatal(err)
	}
	if k, ok := f.sessions.of("ESP_PEND01"); !ok || k != 0 {
		t.Fatalf("removal revoked keeping %d (%v), want every session", k, ok)
	}
	if gen, err := f.svc.Check("ESP_PEND01", "ESP_PEND01", []byte(a.Password)); gen != 0 || err != nil {
		t.Fatalf("removed credentials still checked: %d %v", gen, err)
	}
	rows, _ = f.store.LoadDeviceCredentials(context.Background())
	if len(rows) != 0 {
		t.Fatalf("rows left: %+v", rows)
	}
	if c := f.issue(t, "ESP_PEND01"); c.Rotated {
		t.Fatal("credentials after a removal count as a rotation")
	}
}
