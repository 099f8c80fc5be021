package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Tokens the fake auth service knows, one per role, and ones that fail.
const (
	adminToken    = "tok-admin"
	operatorToken = "tok-operator"
	viewerToken   = "tok-viewer"
	expiredToken  = "tok-expired"
	revokedToken  = "tok-revoked"
	disabledToken = "tok-disabled"
)

var errBoom = errors.New("boom")

type fakeAuth struct {
	mu       sync.Mutex
	users    map[int64]store.User
	nextID   int64
	setupErr error
	loginErr error
	err      error // returned by the account calls when set
	logouts  []bool
}

func newFakeAuth() *fakeAuth {
	a := &fakeAuth{users: map[int64]store.User{}, nextID: 10}
	for i, role := range []string{auth.RoleAdmin, auth.RoleOperator, auth.RoleViewer} {
		id := int64(i + 1)
		a.users[id] = store.User{ID: id, Username: role, Email: role + "@example.org", Role: role, IsActive: true}
	}
	return a
}

func (a *fakeAuth) principal(id int64) auth.Principal {
	a.mu.Lock()
	defer a.mu.Unlock()
	return auth.Principal{User: a.users[id], Claims: &auth.Claims{}}
}

func (a *fakeAuth) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	switch token {
	case adminToken:
		return a.principal(1), nil
	case operatorToken:
		return a.principal(2), nil
	case viewerToken:
		return a.principal(3), nil
	case expiredToken:
		return auth.Principal{}, auth.ErrTokenExpired
	case revokedToken:
		return auth.Principal{}, auth.ErrTokenRevoked
	case disabledToken:
		return a.principal(3), auth.ErrUserDisabled
	case "tok-broken":
		return auth.Principal{}, errBoom
	}
	return auth.Principal{}, auth.ErrInvalidToken
}

func (a *fakeAuth) OnRevoke(func(int64, string)) {}

func (a *fakeAuth) UserCount(context.Context) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.users), a.err
}

func tokensFor(u store.User) auth.Tokens {
	return auth.Tokens{AccessToken: "access-" + u.Username, RefreshToken: "refresh-" + u.Username, TokenType: "bearer"}
}

func (a *fakeAuth) Setup(ctx context.Context, n auth.NewUser) (store.User, auth.Tokens, error) {
	if a.setupErr != nil {
		return store.User{}, auth.Tokens{}, a.setupErr
	}
	n.Role = auth.RoleAdmin
	u, err := a.CreateUser(ctx, n)
	return u, tokensFor(u), err
}

func (a *fakeAuth) Login(_ context.Context, login, password string, _ bool) (store.User, auth.Tokens, error) {
	if a.loginErr != nil {
		return store.User{}, auth.Tokens{}, a.loginErr
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

func (a *fakeAuth) Refresh(_ context.Context, refresh string) (store.User, auth.Tokens, error) {
	switch refresh {
	case "refresh-admin":
		u := a.principal(1).User
		return u, tokensFor(u), nil
	case "refresh-disabled":
		return store.User{}, auth.Tokens{}, auth.ErrUserDisabled
	}
	return store.User{}, auth.Tokens{}, auth.ErrInvalidToken
}

func (a *fakeAuth) Logout(_ context.Context, _ auth.Principal, _ string, all bool) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logouts = append(a.logouts, all)
	if all {
		return 3, a.err
	}
	return 1, a.err
}

func (a *fakeAuth) IssueFor(u store.User) (auth.Tokens, error) { return tokensFor(u), a.err }

func (a *fakeAuth) CreateUser(_ context.Context, n auth.NewUser) (store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return store.User{}, a.err
	}
	for _, u := range a.users {
		if u.Username == n.Username || u.Email == n.Email {
			return store.User{}, store.ErrDuplicate
		}
	}
	a.nextID++
	u := store.User{ID: a.nextID, Username: n.Username, Email: n.Email, FullName: n.FullName, Role: n.Role,
		IsActive: true, CreatedAt: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	a.users[u.ID] = u
	return u, nil
}

func (a *fakeAuth) Users(context.Context) ([]store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []store.User
	for id := int64(1); id <= a.nextID; id++ {
		if u, ok := a.users[id]; ok {
			out = append(out, u)
		}
	}
	return out, a.err
}

func (a *fakeAuth) User(_ context.Context, id int64) (store.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return store.User{}, a.err
	}
	u, ok := a.users[id]
	if !ok {
		return u, store.ErrNotFound
	}
	return u, nil
}

func (a *fakeAuth) UpdateUser(_ context.Context, id int64, p auth.UserPatch) (store.User, []string, error) {
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

func (a *fakeAuth) DeleteUser(_ context.Context, actor store.User, id int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if actor.ID == id {
		return auth.ErrCannotDeleteSelf
	}
	delete(a.users, id)
	return nil
}

func (a *fakeAuth) SetPassword(_ context.Context, id int64, current *string, _ string) (store.User, error) {
	if current != nil && *current != "Pass-word1" {
		return store.User{}, auth.ErrInvalidCurrentPwd
	}
	return a.principal(id).User, nil
}

// fakeDevices is an in-memory registry that records the calls that change it.
type fakeDevices struct {
	mu       sync.Mutex
	devices  map[string]device.Device
	order    []string
	pushErr  error
	resetErr error
	pushes   []string
	lastPush *device.Push
	patches  []device.Patch
}

func newFakeDevices(ds ...device.Device) *fakeDevices {
	f := &fakeDevices{devices: map[string]device.Device{}}
	for _, d := range ds {
		f.put(d)
	}
	return f
}

func (f *fakeDevices) put(d device.Device) {
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

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	return d, nil
}

func (f *fakeDevices) List() []device.Device {
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

func (f *fakeDevices) Register(_ context.Context, reg device.Registration, actor string) (device.Device, error) {
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

func (f *fakeDevices) Update(_ context.Context, id string, p device.Patch) (device.Device, error) {
	d, err := f.Get(id)
	if err != nil {
		return d, err
	}
	f.mu.Lock()
	f.patches = append(f.patches, p)
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

func (f *fakeDevices) Delete(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[id]; !ok {
		return device.ErrNotFound
	}
	delete(f.devices, id)
	return nil
}

func (f *fakeDevices) transition(id string, from []string, to string) (device.Device, error) {
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

func (f *fakeDevices) Approve(_ context.Context, id, actor, _ string) (device.Device, error) {
	d, err := f.transition(id, []string{device.StatusPending, device.StatusRejected}, device.StatusApproved)
	if err == nil {
		d.ApprovedBy = actor
		f.put(d)
	}
	return d, err
}

func (f *fakeDevices) Reject(_ context.Context, id, _, _ string) (device.Device, error) {
	return f.transition(id, []string{device.StatusPending}, device.StatusRejected)
}

func (f *fakeDevices) SetPending(_ context.Context, id, _, _ string) (device.Device, error) {
	return f.transition(id, []string{device.StatusApproved, device.StatusOnline, device.StatusOffline,
		device.StatusRejected}, device.StatusPending)
}

func (f *fakeDevices) FactoryReset(context.Context, string) error { return f.resetErr }

func (f *fakeDevices) PushConfig(_ context.Context, id, trigger string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pushErr != nil {
		return "", f.pushErr
	}
	f.pushes = append(f.pushes, id+":"+trigger)
	return "corr-1", nil
}

func (f *fakeDevices) LastPush(string) *device.Push {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastPush
}

// fakeSensors keeps sensor configs by id.
type fakeSensors struct {
	mu        sync.Mutex
	configs   []sensor.Config
	upsertErr error
	queryErr  error
	latest    []sensor.LatestValue
	history   sensor.History
	lastQuery sensor.HistoryQuery
	reply     sensor.ProcessReply
	processed []sensor.ProcessRequest
	counted   []string
	saved     map[string]map[string]any
}

func (f *fakeSensors) ByDevice(id string) []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sensor.Config
	for _, c := range f.configs {
		if c.EspID == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSensors) All() []sensor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sensor.Config(nil), f.configs...)
}

func (f *fakeSensors) ByID(id string) (sensor.Config, error) {
	for _, c := range f.All() {
		if c.ID == id {
			return c, nil
		}
	}
	return sensor.Config{}, sensor.ErrNotFound
}

func (f *fakeSensors) Find(id string, gpio int, sel sensor.Selector) (sensor.Config, []sensor.Config, error) {
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

func (f *fakeSensors) Upsert(_ context.Context, c sensor.Config) (sensor.Config, string, error) {
	if f.upsertErr != nil {
		return c, "", f.upsertErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c.ID = fmt.Sprintf("00000000-0000-0000-0000-%012d", len(f.configs)+1)
	f.configs = append(f.configs, c)
	warning := ""
	if c.GPIO == 4 {
		warning = "ADC2 pin while Wi-Fi is on"
	}
	return c, warning, nil
}

func (f *fakeSensors) Delete(_ context.Context, id string) (sensor.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.configs {
		if c.ID == id {
			f.configs = append(f.configs[:i], f.configs[i+1:]...)
			return c, nil
		}
	}
	return sensor.Config{}, sensor.ErrNotFound
}

func (f *fakeSensors) DeleteDevice(_ context.Context, id string) error {
	for _, c := range f.ByDevice(id) {
		_, _ = f.Delete(context.Background(), c.ID)
	}
	return nil
}

func (f *fakeSensors) SaveCalibration(_ context.Context, id string, cal map[string]any) (sensor.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saved == nil {
		f.saved = map[string]map[string]any{}
	}
	f.saved[id] = cal
	return sensor.Config{ID: id}, nil
}

func (f *fakeSensors) Query(_ context.Context, q sensor.HistoryQuery) (sensor.History, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQuery = q
	return f.history, f.queryErr
}

func (f *fakeSensors) Latest(string, int, string) []sensor.LatestValue { return f.latest }

func (f *fakeSensors) LatestOf(c sensor.Config) (store.Reading, bool) {
	for _, l := range f.latest {
		if l.Key.EspID == c.EspID && l.Key.GPIO == c.GPIO {
			return l.Reading, true
		}
	}
	return store.Reading{}, false
}

func (f *fakeSensors) Process(req sensor.ProcessRequest) sensor.ProcessReply {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.processed = append(f.processed, req)
	return f.reply
}

func (f *fakeSensors) CountProcess(result string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counted = append(f.counted, result)
}

// fakeAudit records entries in memory.
type fakeAudit struct {
	mu        sync.Mutex
	entries   []store.AuditEntry
	retention audit.Retention
	err       error
	filters   []store.AuditFilter
}

func (f *fakeAudit) Record(_ context.Context, e store.AuditEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e)
}

func (f *fakeAudit) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.entries {
		out = append(out, e.EventType)
	}
	return out
}

func (f *fakeAudit) Query(_ context.Context, flt store.AuditFilter) ([]store.AuditEntry, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	return append([]store.AuditEntry(nil), f.entries...), len(f.entries), f.err
}

func (f *fakeAudit) Counts(context.Context, time.Time) (map[string]int, map[string]int, *time.Time, *time.Time, error) {
	return map[string]int{"info": 6, "error": 1, "critical": 1}, map[string]int{"login_success": 8}, nil, nil, f.err
}

func (f *fakeAudit) GetRetention(context.Context) (audit.Retention, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.retention, f.err
}

func (f *fakeAudit) PutRetention(_ context.Context, r audit.Retention) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retention = r
	return nil
}

func (f *fakeAudit) Cleanup(_ context.Context, dry bool) (audit.CleanupResult, error) {
	return audit.CleanupResult{DeletedCount: 2, DeletedBySeverity: map[string]int64{"info": 2}, DryRun: dry,
		Errors: []string{}}, f.err
}

type fakePinger struct{ err error }

func (p fakePinger) Ping(context.Context) error { return p.err }

type fakeBroker struct{ up bool }

func (b fakeBroker) Connected() bool { return b.up }

type fakePool struct{}

func (fakePool) Stats() sql.DBStats { return sql.DBStats{MaxOpenConnections: 4, InUse: 1, Idle: 3} }

type fakeIngest struct{}

func (fakeIngest) DeviceCounters(string) ingest.Counters {
	return ingest.Counters{Received: 7, Processed: 7, Dropped: map[string]int64{}}
}

func (fakeIngest) Totals() (int64, time.Time) {
	return 42, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
}

// fixture is a server over fakes.
type fixture struct {
	srv     *Server
	auth    *fakeAuth
	devices *fakeDevices
	sensors *fakeSensors
	audit   *fakeAudit
	reg     *prometheus.Registry
	logs    *strings.Builder
}

func newFixture(t *testing.T, ds ...device.Device) *fixture {
	t.Helper()
	f := &fixture{
		auth:    newFakeAuth(),
		devices: newFakeDevices(ds...),
		sensors: &fakeSensors{},
		audit:   &fakeAudit{retention: audit.DefaultRetention()},
		reg:     prometheus.NewRegistry(),
		logs:    &strings.Builder{},
	}
	f.srv = New(Deps{
		Version:  "test",
		Store:    fakePinger{},
		DB:       fakePool{},
		Broker:   fakeBroker{up: true},
		Registry: f.reg,
		Logger:   slog.New(slog.NewTextHandler(f.logs, nil)),
		DataDir:  t.TempDir(),
		Auth:     f.auth,
		Devices:  f.devices,
		Audit:    f.audit,
		Ingest:   fakeIngest{},
		Sensors:  f.sensors,
		Live:     &fakeFeed{},
	})
	f.srv.SetReady(true)
	t.Cleanup(f.srv.Close)
	return f
}

// response is a recorded reply with its JSON body decoded.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
	list   []any
}

// do serves one request through the full handler chain; body is a JSON
// string, sent as is, or nil.
func (f *fixture) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(raw))
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	return decodeResponse(t, rec)
}

func decodeResponse(t *testing.T, rec *httptest.ResponseRecorder) response {
	t.Helper()
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		return r
	}
	if strings.HasPrefix(strings.TrimSpace(r.raw), "[") {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.list); err != nil {
			t.Fatalf("reply is not JSON: %v: %s", err, r.raw)
		}
	} else if r.raw != "" {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			t.Fatalf("reply is not JSON: %v: %s", err, r.raw)
		}
	}
	return r
}

func (r response) code() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// fieldErrors are the 422 entries as "loc: type", loc joined with dots.
func (r response) fieldErrors() []string {
	var out []string
	list, _ := r.body["detail"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		var parts []string
		for _, p := range m["loc"].([]any) {
			parts = append(parts, strings.TrimSuffix(strings.TrimSuffix(jsonString(p), `"`), `"`))
		}
		out = append(out, strings.Join(parts, ".")+": "+m["type"].(string))
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

func (r response) obj(key string) map[string]any {
	m, _ := r.body[key].(map[string]any)
	return m
}

func (r response) items(key string) []any {
	l, _ := r.body[key].([]any)
	return l
}

func recorder(method, path string) (*httptest.ResponseRecorder, *http.Request) {
	return httptest.NewRecorder(), httptest.NewRequest(method, path, nil)
}

func sensorOn(esp string, gpio int, typ string) sensor.Config {
	return sensor.Config{
		ID:             fmt.Sprintf("11111111-0000-0000-0000-%012d", gpio),
		EspID:          esp,
		GPIO:           gpio,
		SensorType:     typ,
		Enabled:        true,
		ProcessingMode: "pi_enhanced",
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }
