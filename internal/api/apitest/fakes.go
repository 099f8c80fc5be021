package apitest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Tokens the fake auth service knows, one per role, and ones that fail.
const (
	AdminToken    = "tok-admin"
	OperatorToken = "tok-operator"
	ViewerToken   = "tok-viewer"
	ExpiredToken  = "tok-expired"
	RevokedToken  = "tok-revoked"
	DisabledToken = "tok-disabled"
)

// ErrBoom is a failure of a domain service that the API answers with 500.
var ErrBoom = errors.New("boom")

// Auth is the accounts and tokens of auth: users 1-3 are admin, operator and
// viewer, each with the password Pass-word1 and a token of its own.
type Auth struct {
	mu       sync.Mutex
	users    map[int64]store.User
	nextID   int64
	SetupErr error  // returned by Setup when set
	LoginErr error  // returned by Login when set
	Err      error  // returned by the account calls when set
	Logouts  []bool // the all_devices flag of each Logout
}

// NewAuth is the three users of Auth.
func NewAuth() *Auth {
	a := &Auth{users: map[int64]store.User{}, nextID: 10}
	for i, role := range []string{auth.RoleAdmin, auth.RoleOperator, auth.RoleViewer} {
		id := int64(i + 1)
		a.users[id] = store.User{
			ID:       id,
			Username: role,
			Email:    role + "@example.org",
			Role:     role,
			IsActive: true,
		}
	}
	return a
}

func (a *Auth) principal(id int64) auth.Principal {
	a.mu.Lock()
	defer a.mu.Unlock()
	return auth.Principal{User: a.users[id], Claims: &auth.Claims{}}
}

func (a *Auth) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	switch token {
	case AdminToken:
		return a.principal(1), nil
	case OperatorToken:
		return a.principal(2), nil
	case ViewerToken:
		return a.principal(3), nil
	case ExpiredToken:
		return auth.Principal{}, auth.ErrTokenExpired
	case RevokedToken:
		return auth.Principal{}, auth.ErrTokenRevoked
	case DisabledToken:
		return a.principal(3), auth.ErrUserDisabled
	case "tok-broken":
		return auth.Principal{}, ErrBoom
	}
	return auth.Principal{}, auth.ErrInvalidToken
}

func (a *Auth) OnRevoke(func(int64, string)) {}

func (a *Auth) UserCount(context.Context) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.users), a.Err
}

func tokensFor(u store.User) auth.Tokens {
	return auth.Tokens{AccessToken: "access-" + u.Username, RefreshToken: "refresh-" + u.Username, TokenType: "bearer"}
}

func (a *Auth) Setup(ctx context.Context, n auth.NewUser) (store.User, auth.Tokens, error) {
	if a.SetupErr != nil {
		return store.User{}, auth.Tokens{}, a.SetupErr
	}
	n.Role = auth.RoleAdmin
	u, err := a.CreateUser(ctx, n)
	return u, tokensFor(u), err
}

func (a *Auth) Login(_ context.Context, login, password string, _ bool) (store.User, auth.Tokens, error) {
	if a.LoginErr != nil {
		return store.User{}, auth.Tokens{}, a.LoginErr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.users {
		if (u.Username == login || u.Email == login) && password == "Pass-word1" {
			return u, tokensFor(u), nil
		}
	}
	return store.User{}, auth.Tokens{}, auth.ErrInvalidCredentials
}

func (a *Auth) Refresh(_ context.Context, refresh string) (store.User, auth.Tokens, error) {
	switch refresh {
	case "refresh-admin":
		u := a.principal(1).User
		return u, tokensFor(u), nil
	case "refresh-disabled":
		return store.User{}, auth.Tokens{}, auth.ErrUserDisabled
	}
	return store.User{}, auth.Tokens{}, auth.ErrInvalidToken
}

func (a *Auth) Logout(_ context.Context, _ auth.Principal, _ string, all bool) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Logouts = append(a.Logouts, all)
	if all {
		return 3, a.Err
	}
	return 1, a.Err
}

func (a *Auth) IssueFor(u store.User) (auth.Tokens, error) { return tokensFor(u), a.Err }

func (a *Auth) CreateUser(_ context.Context, n auth.NewUser) (store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Err != nil {
		return store.User{}, a.Err
	}
	for _, u := range a.users {
		if u.Username == n.Username || u.Email == n.Email {
			return store.User{}, store.ErrDuplicate
		}
	}
	a.nextID++
	u := store.User{
		ID:        a.nextID,
		Username:  n.Username,
		Email:     n.Email,
		FullName:  n.FullName,
		Role:      n.Role,
		IsActive:  true,
		CreatedAt: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC),
	}
	a.users[u.ID] = u
	return u, nil
}

func (a *Auth) Users(context.Context) ([]store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []store.User
	for id := int64(1); id <= a.nextID; id++ {
		if u, ok := a.users[id]; ok {
			out = append(out, u)
		}
	}
	return out, a.Err
}

func (a *Auth) User(_ context.Context, id int64) (store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Err != nil {
		return store.User{}, a.Err
	}
	u, ok := a.users[id]
	if !ok {
		return u, store.ErrNotFound
	}
	return u, nil
}

func (a *Auth) UpdateUser(_ context.Context, id int64, p auth.UserPatch) (store.User, []string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[id]
	var changed []string
	if p.Role != nil {
		if *p.Role != auth.RoleAdmin && u.Role == auth.RoleAdmin && id == 1 {
			return u, nil, store.ErrLastAdmin
		}
		u.Role, changed = *p.Role, append(changed, "role")
	}
	if p.Email != nil {
		u.Email, changed = *p.Email, append(changed, "email")
	}
	if p.FullName != nil {
		u.FullName, changed = *p.FullName, append(changed, "full_name")
	}
	if p.IsActive != nil {
		u.IsActive, changed = *p.IsActive, append(changed, "is_active")
	}
	a.users[id] = u
	return u, changed, nil
}

func (a *Auth) DeleteUser(_ context.Context, actor store.User, id int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if actor.ID == id {
		return auth.ErrCannotDeleteSelf
	}
	delete(a.users, id)
	return nil
}

func (a *Auth) SetPassword(_ context.Context, id int64, current *string, _ string) (store.User, error) {
	if current != nil && *current != "Pass-word1" {
		return store.User{}, auth.ErrInvalidCurrentPwd
	}
	return a.principal(id).User, nil
}

// Devices is an in-memory registry that records the calls that change it.
type Devices struct {
	mu         sync.Mutex
	devices    map[string]device.Device
	order      []string
	PushErr    error
	ResetErr   error
	Pushes     []string
	LastPushed *device.Push
	Patches    []device.Patch
}

// NewDevices is a registry holding ds.
func NewDevices(ds ...device.Device) *Devices {
	f := &Devices{devices: map[string]device.Device{}}
	for _, d := range ds {
		f.put(d)
	}
	return f
}

func (f *Devices) put(d device.Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d.ID == "" {
		d.ID = "uuid-" + d.DeviceID
	}
	if _, ok := f.devices[d.DeviceID]; !ok {
		f.order = append(f.order, d.DeviceID)
	}
	f.devices[d.DeviceID] = d
}

func (f *Devices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return d, nil
}

func (f *Devices) List() []device.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]device.Device, 0, len(f.order))
	for _, id := range f.order {
		if d, ok := f.devices[id]; ok {
			out = append(out, d)
		}
	}
	return out
}

func (f *Devices) Register(_ context.Context, reg device.Registration, actor string) (device.Device, error) {
	if _, err := f.Get(reg.DeviceID); err == nil {
		return device.Device{}, device.ErrDuplicate
	}
	d := device.Device{}
	d.DeviceID, d.Name, d.Status, d.ApprovedBy = reg.DeviceID, reg.Name, device.StatusApproved, actor
	d.FirmwareVersion, d.HardwareType, d.IPAddress = reg.FirmwareVersion, reg.HardwareType, reg.IPAddress
	d.Metadata = map[string]any{"mac_address": reg.MACAddress}
	f.put(d)
	return f.Get(reg.DeviceID)
}

func (f *Devices) Update(_ context.Context, id string, p device.Patch) (device.Device, error) {
	d, err := f.Get(id)
	if err != nil {
		return d, err
	}
	f.mu.Lock()
	f.Patches = append(f.Patches, p)
	f.mu.Unlock()
	if p.Name != nil {
		d.Name = *p.Name
	}
	if d.Metadata == nil {
		d.Metadata = map[string]any{}
	}
	if p.IsZoneMaster != nil {
		d.Metadata["is_zone_master"] = *p.IsZoneMaster
	}
	for k, v := range p.Metadata {
		d.Metadata[k] = v
	}
	f.put(d)
	return d, nil
}

func (f *Devices) Delete(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[id]; !ok {
		return device.ErrNotFound
	}
	delete(f.devices, id)
	return nil
}

func (f *Devices) transition(id string, from []string, to string) (device.Device, error) {
	d, err := f.Get(id)
	if err != nil {
		return d, err
	}
	for _, st := range from {
		if d.Status == st {
			d.Status = to
			f.put(d)
			return d, nil
		}
	}
	return d, device.ErrInvalidState
}

func (f *Devices) Approve(_ context.Context, id, actor, _ string) (device.Device, error) {
	d, err := f.transition(id, []string{device.StatusPending, device.StatusRejected}, device.StatusApproved)
	if err == nil {
		d.ApprovedBy = actor
		f.put(d)
	}
	return d, err
}

func (f *Devices) Reject(_ context.Context, id, _, _ string) (device.Device, error) {
	return f.transition(id, []string{device.StatusPending}, device.StatusRejected)
}

func (f *Devices) SetPending(_ context.Context, id, _, _ string) (device.Device, error) {
	return f.transition(id, []string{device.StatusApproved, device.StatusOnline, device.StatusOffline,
		device.StatusRejected}, device.StatusPending)
}

func (f *Devices) FactoryReset(context.Context, string) error { return f.ResetErr }

func (f *Devices) PushConfig(_ context.Context, id, trigger string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.PushErr != nil {
		return "", f.PushErr
	}
	f.Pushes = append(f.Pushes, id+":"+trigger)
	return "corr-1", nil
}

func (f *Devices) LastPush(string) *device.Push {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.LastPushed
}

// Sensors keeps sensor configs by id and records what the API asks of the
// sensor domain.
type Sensors struct {
	mu        sync.Mutex
	Configs   []sensor.Config
	UpsertErr error
	QueryErr  error
	Values    []sensor.LatestValue
	History   sensor.History
	LastQuery sensor.HistoryQuery
	Reply     sensor.ProcessReply
	Processed []sensor.ProcessRequest
	Counted   []string
	Saved     map[string]map[string]any
}

func (f *Sensors) ByDevice(id string) []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sensor.Config
	for _, c := range f.Configs {
		if c.EspID == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *Sensors) All() []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sensor.Config(nil), f.Configs...)
}

func (f *Sensors) ByID(id string) (sensor.Config, error) {
	for _, c := range f.All() {
		if c.ID == id {
			return c, nil
		}
	}
	return sensor.Config{}, sensor.ErrNotFound
}

func (f *Sensors) Find(id string, gpio int, sel sensor.Selector) (sensor.Config, []sensor.Config, error) {
	var found []sensor.Config
	for _, c := range f.ByDevice(id) {
		if c.GPIO == gpio && (sel.SensorType == "" || sel.SensorType == c.SensorType) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return sensor.Config{}, nil, sensor.ErrNotFound
	case 1:
		return found[0], nil, nil
	}
	return sensor.Config{}, found, sensor.ErrAmbiguous
}

func (f *Sensors) Upsert(_ context.Context, c sensor.Config) (sensor.Config, string, error) {
	if f.UpsertErr != nil {
		return c, "", f.UpsertErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c.ID = fmt.Sprintf("00000000-0000-0000-0000-%012d", len(f.Configs)+1)
	f.Configs = append(f.Configs, c)
	warning := ""
	if c.GPIO == 4 {
		warning = "ADC2 pin while Wi-Fi is on"
	}
	return c, warning, nil
}

func (f *Sensors) Delete(_ context.Context, id string) (sensor.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.Configs {
		if c.ID == id {
			f.Configs = append(f.Configs[:i], f.Configs[i+1:]...)
			return c, nil
		}
	}
	return sensor.Config{}, sensor.ErrNotFound
}

func (f *Sensors) DeleteDevice(_ context.Context, id string) error {
	for _, c := range f.ByDevice(id) {
		_, _ = f.Delete(context.Background(), c.ID)
	}
	return nil
}

func (f *Sensors) SaveCalibration(_ context.Context, id string, cal map[string]any) (sensor.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Saved == nil {
		f.Saved = map[string]map[string]any{}
	}
	f.Saved[id] = cal
	return sensor.Config{ID: id}, nil
}

func (f *Sensors) Query(_ context.Context, q sensor.HistoryQuery) (sensor.History, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.LastQuery = q
	return f.History, f.QueryErr
}

func (f *Sensors) Latest(string, int, string) []sensor.LatestValue { return f.Values }

func (f *Sensors) LatestOf(c sensor.Config) (store.Reading, bool) {
	for _, l := range f.Values {
		if l.Key.EspID == c.EspID && l.Key.GPIO == c.GPIO {
			return l.Reading, true
		}
	}
	return store.Reading{}, false
}

func (f *Sensors) Process(req sensor.ProcessRequest) sensor.ProcessReply {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Processed = append(f.Processed, req)
	return f.Reply
}

func (f *Sensors) CountProcess(result string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Counted = append(f.Counted, result)
}

// Audit records entries in memory.
type Audit struct {
	mu        sync.Mutex
	Entries   []store.AuditEntry
	Retention audit.Retention
	Err       error
	Filters   []store.AuditFilter
}

func (f *Audit) Record(_ context.Context, e store.AuditEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Entries = append(f.Entries, e)
}

func (f *Audit) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.Entries {
		out = append(out, e.EventType)
	}
	return out
}

func (f *Audit) Query(_ context.Context, flt store.AuditFilter) ([]store.AuditEntry, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Filters = append(f.Filters, flt)
	return append([]store.AuditEntry(nil), f.Entries...), len(f.Entries), f.Err
}

func (f *Audit) Counts(context.Context, time.Time) (map[string]int, map[string]int, *time.Time, *time.Time, error) {
	return map[string]int{"info": 6, "error": 1, "critical": 1}, map[string]int{"login_success": 8}, nil, nil, f.Err
}

func (f *Audit) GetRetention(context.Context) (audit.Retention, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Retention, f.Err
}

func (f *Audit) PutRetention(_ context.Context, r audit.Retention) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Retention = r
	return nil
}

func (f *Audit) Cleanup(_ context.Context, dry bool) (audit.CleanupResult, error) {
	return audit.CleanupResult{
		DeletedCount:      2,
		DeletedBySeverity: map[string]int64{"info": 2},
		DryRun:            dry,
		Errors:            []string{},
	}, f.Err
}

// Pinger is the store's round trip, failing with Err.
type Pinger struct{ Err error }

func (p Pinger) Ping(context.Context) error { return p.Err }

// Broker is the message bus connection.
type Broker struct{ Up bool }

func (b Broker) Connected() bool { return b.Up }

// Pool is the read pool: 4 connections, 1 in use.
type Pool struct{}

func (Pool) PoolStats() (size, inUse, idle int) { return 4, 1, 3 }

// Ingest is the ingest pipeline: 7 messages of every device, 42 in all,
// arriving at 12.5/s, 3 of them dropped.
type Ingest struct{}

func (Ingest) Rate() float64 { return 12.5 }

func (Ingest) Dropped() map[string]int64 {
	return map[string]int64{"oversize": 1, "not_approved": 2}
}

func (Ingest) DeviceCounters(string) ingest.Counters {
	return ingest.Counters{Received: 7, Processed: 7, Dropped: map[string]int64{}}
}

func (Ingest) Totals() (int64, time.Time) {
	return 42, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
}
