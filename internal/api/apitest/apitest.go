// Package apitest serves the HTTP core of internal/api over in-memory fakes
// of the domain, for the unit tests of the core and of the resource packages:
// a test builds a Fixture, registers its resource's routes on Fixture.Srv and
// sends requests through the whole handler chain (request id, guard,
// decoding, error shape).
package apitest

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Fixture is the HTTP core over fakes; the resource packages' routes are
// added by the test.
type Fixture struct {
	Srv      *api.Server
	Auth     *Auth
	Devices  *Devices
	Sensors  *Sensors
	Audit    *Audit
	Feed     *Feed
	Registry *prometheus.Registry
	Logs     *Log
}

// New serves the core over fresh fakes; the device registry holds ds.
func New(t testing.TB, ds ...device.Device) *Fixture { return NewWith(t, nil, ds...) }

// NewWith is New with the core's dependencies changed by edit (when not nil)
// before the server is built.
func NewWith(t testing.TB, edit func(*api.Deps), ds ...device.Device) *Fixture {
	t.Helper()
	f := &Fixture{
		Auth:     NewAuth(),
		Devices:  NewDevices(ds...),
		Sensors:  &Sensors{},
		Audit:    &Audit{Retention: audit.DefaultRetention()},
		Feed:     &Feed{},
		Registry: prometheus.NewRegistry(),
		Logs:     &Log{},
	}
	deps := api.Deps{
		Version:  "test",
		Store:    Pinger{},
		Broker:   Broker{Up: true},
		Registry: f.Registry,
		Logger:   slog.New(slog.NewTextHandler(f.Logs, nil)),
		DataDir:  t.TempDir(),
		Auth:     f.Auth,
		Devices:  f.Devices,
		Audit:    f.Audit,
		Ingest:   Ingest{},
		Live:     f.Feed,
	}
	if edit != nil {
		edit(&deps)
	}

	f.Srv = api.New(deps)
	f.Srv.SetReady(true)
	t.Cleanup(f.Srv.Close)
	return f
}

// Log collects what the server logs.
type Log struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Response is a recorded reply with its JSON body decoded: an object into
// Body, an array into List.
type Response struct {
	Status int
	Header http.Header
	Raw    string
	Body   map[string]any
	List   []any
}

// Do serves one request through the full handler chain. body is a JSON
// string sent as is, a value sent as its JSON, or nil for none; token, when
// not empty, is sent as the bearer token.
func (f *Fixture) Do(t testing.TB, method, path, token string, body any) Response {
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
	f.Srv.Handler().ServeHTTP(rec, req)
	return Decode(t, rec)
}

// Decode reads a recorded reply; a JSON content type with a body that is
// not JSON fails the test.
func Decode(t testing.TB, rec *httptest.ResponseRecorder) Response {
	t.Helper()
	r := Response{Status: rec.Code, Header: rec.Header(), Raw: rec.Body.String()}
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		return r
	}

	var err error
	switch {
	case strings.HasPrefix(strings.TrimSpace(r.Raw), "["):
		err = json.Unmarshal(rec.Body.Bytes(), &r.List)
	case r.Raw != "":
		err = json.Unmarshal(rec.Body.Bytes(), &r.Body)
	}
	if err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, r.Raw)
	}
	return r
}

// Code is the error code of an error reply (docs/api.md §1.5), "" for none.
func (r Response) Code() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// FieldErrors are the entries of a 422 as "loc: type", loc joined with dots.
func (r Response) FieldErrors() []string {
	var out []string
	list, _ := r.Body["detail"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		var parts []string
		for _, p := range m["loc"].([]any) {
			parts = append(parts, jsonString(p))
		}
		out = append(out, strings.Join(parts, ".")+": "+m["type"].(string))
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// Obj is the object under key of the body, nil when it is none.
func (r Response) Obj(key string) map[string]any {
	m, _ := r.Body[key].(map[string]any)
	return m
}

// Items is the array under key of the body, nil when it is none.
func (r Response) Items(key string) []any {
	l, _ := r.Body[key].([]any)
	return l
}

// Recorder is a request without a body and a recorder for its reply, for
// calling a handler or an error writer directly.
func Recorder(method, path string) (*httptest.ResponseRecorder, *http.Request) {
	return httptest.NewRecorder(), httptest.NewRequest(method, path, nil)
}

// Dev is a device of the god kaiser in status, with empty metadata.
func Dev(id, status string) device.Device {
	d := device.Device{Device: store.Device{DeviceID: id, Status: status, KaiserID: "god"}}
	d.Metadata = map[string]any{}
	return d
}

// Fleet is n devices in status, ESP_000000 onwards.
func Fleet(n int, status string) []device.Device {
	var out []device.Device
	for i := range n {
		out = append(out, Dev(fmt.Sprintf("ESP_%06X", i), status))
	}
	return out
}

// SensorOn is an enabled sensor config on esp's gpio, its id made of the gpio.
func SensorOn(esp string, gpio int, typ string) sensor.Config {
	return sensor.Config{
		ID:             fmt.Sprintf("11111111-0000-0000-0000-%012d", gpio),
		EspID:          esp,
		GPIO:           gpio,
		SensorType:     typ,
		Enabled:        true,
		ProcessingMode: "pi_enhanced",
	}
}
