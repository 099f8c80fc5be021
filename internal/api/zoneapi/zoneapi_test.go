package zoneapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/ingest"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/zone"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeServer serves the registered routes as an operator
// (apitest.Registrar).
type fakeServer struct {
	*apitest.Registrar
}

func newFakeServer(devices *fakeDevices) *fakeServer {
	as := auth.Principal{User: store.User{Username: "op", Role: auth.RoleOperator}}
	return &fakeServer{apitest.NewRegistrar(as, devices.Get)}
}

type fakeDevices struct {
	mu      sync.Mutex
	devices map[string]device.Device
}

func (f *fakeDevices) Get(id string) (device.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[id]
	if !ok {
		return d, device.ErrNotFound
	}
	d.Metadata = maps.Clone(d.Metadata)
	d.RebootRequired, _ = d.Metadata["reboot_required"].(bool)
	return d, nil
}

func (f *fakeDevices) List() []device.Device {
	var out []device.Device
	f.mu.Lock()
	ids := slices.Sorted(maps.Keys(f.devices))
	f.mu.Unlock()
	for _, id := range ids {
		d, _ := f.Get(id)
		out = append(out, d)
	}
	return out
}

func (f *fakeDevices) Update(_ context.Context, id string, p device.Patch) (device.Device, error) {
	f.mu.Lock()
	d, ok := f.devices[id]
	if !ok {
		f.mu.Unlock()
		return d, device.ErrNotFound
	}
	d.Metadata = maps.Clone(d.Metadata)
	for dst, v := range map[*string]*string{&d.ZoneID: p.ZoneID, &d.ZoneName: p.ZoneName, &d.MasterZoneID: p.MasterZoneID} {
		if v != nil {
			*dst = *v
		}
	}
	for k, v := range p.Metadata {
		if v == nil {
			delete(d.Metadata, k)
		} else {
			d.Metadata[k] = v
		}
	}
	f.devices[id] = d
	f.mu.Unlock()
	return f.Get(id)
}

func (f *fakeDevices) Admit(m ingest.Message) (device.Device, error) { return f.Get(m.Topic.EspID) }

func (f *fakeDevices) set(id string, change func(d *device.Device)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devices[id]
	d.Metadata = maps.Clone(d.Metadata)
	change(&d)
	f.devices[id] = d
}

type memStore struct {
	mu       sync.Mutex
	subzones map[string]store.Subzone
}

func (m *memStore) LoadZones(context.Context) ([]store.Zone, error)       { return nil, nil }
func (m *memStore) SaveZone(context.Context, store.Zone) error            { return nil }
func (m *memStore) DeleteZone(context.Context, string) error              { return nil }
func (m *memStore) LoadSubzones(context.Context) ([]store.Subzone, error) { return nil, nil }
func (m *memStore) AppendZoneChange(context.Context, store.ZoneChange) error {
	return nil
}

func (m *memStore) SaveSubzone(_ context.Context, sz store.Subzone) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subzones[sz.EspID+"/"+sz.SubzoneID] = sz
	return nil
}

func (m *memStore) DeleteSubzone(_ context.Context, espID, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subzones, espID+"/"+id)
	return nil
}

type fakeBus struct {
	mu     sync.Mutex
	err    error
	topics []string
}

func (b *fakeBus) Publish(_ context.Context, topic string, _ []byte, _ byte, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.topics = append(b.topics, topic)
	return nil
}

func (b *fakeBus) count(suffix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, t := range b.topics {
		if strings.HasSuffix(t, "/"+suffix) {
			n++
		}
	}
	return n
}

type fixture struct {
	t       *testing.T
	srv     *fakeServer
	devices *fakeDevices
	bus     *fakeBus
	zones   *zone.Service
}

const espID = "ESP_A1B2C3"

// newFixture serves the routes over a real zone service with one approved,
// online baseline device (espID).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		devices: &fakeDevices{devices: map[string]device.Device{}},
		bus:     &fakeBus{},
	}
	f.addDevice(espID, device.StatusOnline)
	f.srv = newFakeServer(f.devices)
	f.zones = zone.New(zone.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		&memStore{subzones: map[string]store.Subzone{}}, f.devices, f.bus, event.NewBus(), nil)
	if err := f.zones.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.zones.Stop)
	Register(f.srv, f.zones)
	return f
}

func (f *fixture) addDevice(id, status string) {
	d := device.Device{}
	d.DeviceID, d.Status, d.KaiserID = id, status, "god"
	d.Metadata = map[string]any{}
	f.devices.mu.Lock()
	f.devices.devices[id] = d
	f.devices.mu.Unlock()
}

type reply struct {
	status int
	body   map[string]any
	list   []any
	raw    string
}

func (f *fixture) do(method, path string, body any) reply {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	f.srv.Mux.ServeHTTP(rec, req)
	r := reply{status: rec.Code, raw: rec.Body.String()}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	_ = json.Unmarshal(rec.Body.Bytes(), &r.list)
	return r
}

func (r reply) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// expect checks a reply's status and, when given, its error code.
func (f *fixture) expect(r reply, status int, code string) {
	f.t.Helper()
	if r.status != status || code != "" && r.code() != code {
		f.t.Fatalf("got %d %s, want %d %s: %s", r.status, r.code(), status, code, r.raw)
	}
}

// zoned assigns espID to zone bed and confirms it with the device's ack.
func (f *fixture) zoned() {
	f.t.Helper()
	f.expect(f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", map[string]any{"zone_id": "bed"}), 200, "")
	tp, _ := contract.ParseTopic("kaiser/god/esp/" + espID + "/zone/ack")
	err := f.zones.HandleZoneAck(context.Background(), ingest.Message{
		Topic:   tp,
		Payload: []byte(`{"status":"zone_assigned","zone_id":"bed","ts":0}`),
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func TestRoutesAndRoles(t *testing.T) {
	f := newFixture(t)
	if len(f.srv.Routes) != 18 {
		t.Fatalf("%d routes registered, want the 18 of docs/api.md §9", len(f.srv.Routes))
	}
	for _, rt := range f.srv.Routes {
		want := auth.RoleOperator
		if rt.Method == "GET" {
			want = auth.RoleViewer
		}
		if rt.MinRole != want {
			t.Errorf("%s %s: min role %s, want %s", rt.Method, rt.Path, rt.MinRole, want)
		}
		if rt.Tag != "zones" || rt.Summary == "" {
			t.Errorf("%s %s: tag %q summary %q", rt.Method, rt.Path, rt.Tag, rt.Summary)
		}
	}
}

func TestZoneCRUD(t *testing.T) {
	f := newFixture(t)
	r := f.do("POST", "/api/v1/zones", map[string]any{"zone_id": "GreenHouse_1", "name": "Greenhouse 1"})
	f.expect(r, 201, "")
	if r.body["zone_id"] != "greenhouse_1" || r.body["status"] != "active" || r.body["device_count"] != 0.0 ||
		r.body["created_at"] == nil {
		t.Fatalf("created %s", r.raw)
	}
	f.expect(f.do("POST", "/api/v1/zones", map[string]any{"zone_id": "GREENHOUSE_1", "name": "x"}), 409, "DUPLICATE")

	r = f.do("PATCH", "/api/v1/zones/greenhouse_1", map[string]any{"description": "north"})
	f.expect(r, 200, "")
	if r.body["description"] != "north" || r.body["name"] != "Greenhouse 1" {
		t.Fatalf("patched %s", r.raw)
	}
	r = f.do("PATCH", "/api/v1/zones/GreenHouse_1", `{"description": null, "name": "GH"}`)
	if r.body["description"] != "" || r.body["name"] != "GH" {
		t.Fatalf("patched %s", r.raw)
	}
	f.expect(f.do("PATCH", "/api/v1/zones/greenhouse_1", `{"name": null}`), 422, "VALIDATION_ERROR")
	f.expect(f.do("PATCH", "/api/v1/zones/nope", map[string]any{"name": "x"}), 404, "NOT_FOUND")

	r = f.do("POST", "/api/v1/zones/greenhouse_1/archive", nil)
	f.expect(r, 200, "")
	if r.body["status"] != "archived" {
		t.Fatalf("archived %s", r.raw)
	}
	f.expect(f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", map[string]any{"zone_id": "greenhouse_1"}),
		409, "INVALID_STATE")
	r = f.do("POST", "/api/v1/zones/greenhouse_1/reactivate", nil)
	if r.body["status"] != "active" {
		t.Fatalf("reactivated %s", r.raw)
	}
	f.expect(f.do("POST", "/api/v1/zones/nope/archive", nil), 404, "NOT_FOUND")

	f.expect(f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", map[string]any{"zone_id": "greenhouse_1"}), 200, "")
	r = f.do("GET", "/api/v1/zones/greenhouse_1", nil)
	if r.body["device_count"] != 1.0 {
		t.Fatalf("device count %s", r.raw)
	}
	f.expect(f.do("DELETE", "/api/v1/zones/greenhouse_1", nil), 409, "INVALID_STATE")
	f.expect(f.do("DELETE", "/api/v1/zone/devices/"+espID+"/zone", nil), 200, "")
	f.expect(f.do("DELETE", "/api/v1/zones/greenhouse_1", nil), 204, "")
	f.expect(f.do("GET", "/api/v1/zones/greenhouse_1", nil), 404, "NOT_FOUND")
}

func TestZoneBodiesAreValidated(t *testing.T) {
	tests := []struct {
		name  string
		body  any
		field string
	}{
		{"missing zone_id", map[string]any{"name": "x"}, "zone_id"},
		{"zone_id with a space", map[string]any{"zone_id": "a b", "name": "x"}, "zone_id"},
		{"zone_id too long", map[string]any{"zone_id": strings.Repeat("a", 33), "name": "x"}, "zone_id"},
		{"missing name", map[string]any{"zone_id": "a"}, "name"},
		{"description too long", map[string]any{"zone_id": "a", "name": "x", "description": strings.Repeat("d", 501)},
			"description"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.do("POST", "/api/v1/zones", tc.body)
			f.expect(r, 422, "VALIDATION_ERROR")
			if !strings.Contains(r.raw, `"`+tc.field+`"`) {
				t.Fatalf("field %s not named: %s", tc.field, r.raw)
			}
		})
	}
}

func TestZoneListPaginatesAndFilters(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.expect(f.do("POST", "/api/v1/zones", map[string]any{"zone_id": fmt.Sprintf("z%d", i), "name": "Z"}), 201, "")
	}
	f.expect(f.do("POST", "/api/v1/zones/z1/archive", nil), 200, "")

	r := f.do("GET", "/api/v1/zones?page=2&page_size=2", nil)
	f.expect(r, 200, "")
	data := r.body["data"].([]any)
	pg := r.body["pagination"].(map[string]any)
	if len(data) != 1 || data[0].(map[string]any)["zone_id"] != "z2" || pg["total_items"] != 3.0 ||
		pg["total_pages"] != 2.0 || pg["has_next"] != false || pg["has_prev"] != true {
		t.Fatalf("page 2: %s", r.raw)
	}
	r = f.do("GET", "/api/v1/zones?status=archived", nil)
	if data := r.body["data"].([]any); len(data) != 1 || data[0].(map[string]any)["zone_id"] != "z1" {
		t.Fatalf("archived: %s", r.raw)
	}
	r = f.do("GET", "/api/v1/zones?page=9", nil)
	if data := r.body["data"].([]any); len(data) != 0 || r.status != 200 {
		t.Fatalf("past the end: %s", r.raw)
	}
	f.expect(f.do("GET", "/api/v1/zones?status=gone", nil), 422, "VALIDATION_ERROR")
	f.expect(f.do("GET", "/api/v1/zones?page_size=101", nil), 422, "VALIDATION_ERROR")
}

func TestAssignAndTheDeviceZoneViews(t *testing.T) {
	f := newFixture(t)
	f.addDevice("ESP_FREE01", device.StatusOffline)
	f.addDevice("ESP_PEND01", device.StatusPending)

	r := f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", map[string]any{
		"zone_id":        "Bed_1",
		"master_zone_id": "Greenhouse",
		"zone_name":      "Bed 1",
	})
	f.expect(r, 200, "")
	want := map[string]any{
		"success":         true,
		"device_id":       espID,
		"zone_id":         "bed_1",
		"master_zone_id":  "greenhouse",
		"zone_name":       "Bed 1",
		"mqtt_topic":      "kaiser/god/esp/" + espID + "/zone/assign",
		"mqtt_sent":       true,
		"ack_received":    false,
		"reboot_required": false,
	}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, r.body[k], v, r.raw)
		}
	}
	if f.bus.count("zone/assign") != 1 {
		t.Fatal("assignment not published")
	}

	r = f.do("GET", "/api/v1/zone/devices/"+espID, nil)
	f.expect(r, 200, "")
	pend, _ := r.body["pending_zone_assignment"].(map[string]any)
	if r.body["zone_id"] != "bed_1" || r.body["kaiser_id"] != "god" || pend["zone_id"] != "bed_1" ||
		r.body["zone_confirmed_at"] != nil {
		t.Fatalf("device zone %s", r.raw)
	}

	r = f.do("GET", "/api/v1/zone/BED_1/devices", nil)
	if len(r.list) != 1 || r.list[0].(map[string]any)["device_id"] != espID {
		t.Fatalf("zone devices %s", r.raw)
	}
	if r = f.do("GET", "/api/v1/zone/empty/devices", nil); r.raw != "[]\n" && r.raw != "[]" {
		t.Fatalf("empty zone %q", r.raw)
	}
	f.expect(f.do("GET", "/api/v1/zone/bed_1/sensors", nil), 404, "NOT_FOUND")
	if r = f.do("GET", "/api/v1/zone/unassigned", nil); len(r.list) != 1 || r.list[0] != "ESP_FREE01" {
		t.Fatalf("unassigned %s", r.raw)
	}

	r = f.do("POST", "/api/v1/zone/devices/ESP_FREE01/assign", map[string]any{"zone_id": "bed_1"})
	if r.body["mqtt_sent"] != false {
		t.Fatalf("offline device: %s", r.raw)
	}
	f.expect(f.do("POST", "/api/v1/zone/devices/ESP_PEND01/assign", map[string]any{"zone_id": "bed_1"}),
		409, "DEVICE_NOT_APPROVED")
	f.expect(f.do("POST", "/api/v1/zone/devices/ESP_NOPE01/assign", map[string]any{"zone_id": "bed_1"}),
		404, "ESP_NOT_FOUND")
	f.expect(f.do("GET", "/api/v1/zone/devices/ESP_NOPE01", nil), 404, "ESP_NOT_FOUND")
}

func TestAssignBodiesAreValidated(t *testing.T) {
	tests := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"missing zone_id", map[string]any{}, "zone_id"},
		{"zone_id pattern", map[string]any{"zone_id": "bed/1"}, "zone_id"},
		{"master_zone_id pattern", map[string]any{"zone_id": "bed", "master_zone_id": "a b"}, "master_zone_id"},
		{"zone_name with a quote", map[string]any{"zone_id": "bed", "zone_name": `Bed "1"`}, "zone_name"},
		{"zone_name with a control character", map[string]any{"zone_id": "bed", "zone_name": "Bed\t1"}, "zone_name"},
		{"unknown strategy", map[string]any{"zone_id": "bed", "subzone_strategy": "merge"}, "subzone_strategy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", tc.body)
			f.expect(r, 422, "VALIDATION_ERROR")
			if !strings.Contains(r.raw, `"`+tc.field+`"`) {
				t.Fatalf("field %s not named: %s", tc.field, r.raw)
			}
			if f.bus.count("zone/assign") != 0 {
				t.Fatal("an invalid assignment was published")
			}
		})
	}
}

func TestAssignToADeviceWithoutKaiserIDIsReported(t *testing.T) {
	f := newFixture(t)
	f.devices.set(espID, func(d *device.Device) { d.KaiserID = "" })
	r := f.do("POST", "/api/v1/zone/devices/"+espID+"/assign", map[string]any{"zone_id": "bed"})
	f.expect(r, 200, "")
	if r.body["reboot_required"] != true || !strings.Contains(r.body["message"].(string), "reboot") {
		t.Fatalf("deafness not reported: %s", r.raw)
	}
	if r = f.do("GET", "/api/v1/zone/devices/"+espID, nil); r.body["reboot_required"] != true {
		t.Fatalf("device zone view: %s", r.raw)
	}
}

func TestUnassign(t *testing.T) {
	f := newFixture(t)
	f.zoned()
	f.expect(f.do("POST", "/api/v1/subzone/devices/"+espID+"/subzones/assign",
		map[string]any{"subzone_id": "north", "assigned_gpios": []int{4}}), 200, "")

	r := f.do("DELETE", "/api/v1/zone/devices/"+espID+"/zone", nil)
	f.expect(r, 200, "")
	if r.body["mqtt_sent"] != true || r.body["mqtt_topic"] != "kaiser/god/esp/"+espID+"/zone/assign" {
		t.Fatalf("removal %s", r.raw)
	}
	if f.bus.count("subzone/remove") != 1 || f.bus.count("zone/assign") != 2 {
		t.Fatalf("published %v", f.bus.topics)
	}
	r = f.do("GET", "/api/v1/zone/devices/"+espID, nil)
	removal, _ := r.body["zone_removal"].(map[string]any)
	if r.body["zone_id"] != nil || removal["status"] != "waiting" {
		t.Fatalf("after removal %s", r.raw)
	}
	f.expect(f.do("DELETE", "/api/v1/zone/devices/ESP_NOPE01/zone", nil), 404, "ESP_NOT_FOUND")
}

func TestSubzoneRoutes(t *testing.T) {
	f := newFixture(t)
	base := "/api/v1/subzone/devices/" + espID + "/subzones"
	f.expect(f.do("POST", base+"/assign", map[string]any{"subzone_id": "north", "assigned_gpios": []int{4}}),
		400, "NO_ZONE_ASSIGNED")
	f.zoned()

	r := f.do("POST", base+"/assign", map[string]any{
		"subzone_id":     "North_Bed",
		"subzone_name":   "North bed",
		"parent_zone_id": "BED",
		"assigned_gpios": []any{4, 5.0},
	})
	f.expect(r, 200, "")
	if r.body["subzone_id"] != "north_bed" || r.body["mqtt_sent"] != true || r.body["status"] != "pending" ||
		fmt.Sprint(r.body["assigned_gpios"]) != "[4 5]" {
		t.Fatalf("assigned %s", r.raw)
	}

	f.expect(f.do("POST", base+"/assign", map[string]any{"subzone_id": "s", "parent_zone_id": "tent",
		"assigned_gpios": []int{13}}), 400, "ZONE_MISMATCH")
	f.expect(f.do("POST", base+"/assign", map[string]any{"subzone_id": "s", "assigned_gpios": []int{6}}),
		400, "GPIO_RESERVED")
	r = f.do("POST", base+"/assign", map[string]any{"subzone_id": "south", "assigned_gpios": []int{13, 5}})
	f.expect(r, 409, "GPIO_CONFLICT")
	details := r.body["error"].(map[string]any)["details"].(map[string]any)
	if details["gpio"] != 5.0 || details["conflict_type"] != "subzone" || details["conflict_component"] != "north_bed" {
		t.Fatalf("conflict details %s", r.raw)
	}
	f.bus.mu.Lock()
	f.bus.err = errors.New("broker down")
	f.bus.mu.Unlock()
	f.expect(f.do("POST", base+"/assign", map[string]any{"subzone_id": "s", "assigned_gpios": []int{13}}),
		503, "MQTT_UNAVAILABLE")
	f.bus.mu.Lock()
	f.bus.err = nil
	f.bus.mu.Unlock()

	r = f.do("GET", base, nil)
	subs := r.body["subzones"].([]any)
	if r.body["zone_id"] != "bed" || r.body["total_count"] != 1.0 || len(subs) != 1 {
		t.Fatalf("list %s", r.raw)
	}
	r = f.do("GET", base+"/NORTH_BED", nil)
	f.expect(r, 200, "")
	if r.body["subzone_name"] != "North bed" || r.body["parent_zone_id"] != "bed" || r.body["safe_mode_active"] != false ||
		r.body["last_ack_at"] != nil {
		t.Fatalf("get %s", r.raw)
	}
	f.expect(f.do("GET", base+"/nope", nil), 404, "SUBZONE_NOT_FOUND")

	f.expect(f.do("POST", base+"/north_bed/safe-mode", map[string]any{"reason": "maintenance"}),
		409, "NOT_SUPPORTED_BY_FIRMWARE")
	if f.bus.count("subzone/safe") != 0 {
		t.Fatal("safe mode published to a baseline device")
	}

	r = f.do("DELETE", base+"/north_bed", nil)
	f.expect(r, 200, "")
	if r.body["status"] != "removed" || f.bus.count("subzone/remove") != 1 {
		t.Fatalf("delete %s", r.raw)
	}
	f.expect(f.do("DELETE", base+"/north_bed", nil), 404, "SUBZONE_NOT_FOUND")
}

func TestSubzonePinsAreValidated(t *testing.T) {
	tests := []struct {
		name string
		pins any
	}{
		{"missing", nil},
		{"not an array", 4},
		{"empty", []int{}},
		{"pin 0", []int{0}},
		{"pin 40", []int{40}},
		{"fraction", []any{4.5}},
		{"string", []any{"4"}},
		{"repeated", []int{4, 4}},
		{"21 pins", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.zoned()
			body := map[string]any{"subzone_id": "north"}
			if tc.pins != nil {
				body["assigned_gpios"] = tc.pins
			}
			r := f.do("POST", "/api/v1/subzone/devices/"+espID+"/subzones/assign", body)
			f.expect(r, 422, "VALIDATION_ERROR")
			if !strings.Contains(r.raw, `"assigned_gpios"`) {
				t.Fatalf("field not named: %s", r.raw)
			}
		})
	}

	t.Run("other fields are reported together", func(t *testing.T) {
		f := newFixture(t)
		r := f.do("POST", "/api/v1/subzone/devices/"+espID+"/subzones/assign",
			map[string]any{"subzone_id": "north-1", "subzone_name": `a"b`, "assigned_gpios": []int{}})
		for _, field := range []string{"subzone_id", "subzone_name", "assigned_gpios"} {
			if !strings.Contains(r.raw, `"`+field+`"`) {
				t.Errorf("%s not named: %s", field, r.raw)
			}
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		f := newFixture(t)
		f.expect(f.do("POST", "/api/v1/subzone/devices/"+espID+"/subzones/assign", `{"subzone_id":`), 422,
			"VALIDATION_ERROR")
	})
}

func TestSafeModeOnNewerFirmware(t *testing.T) {
	f := newFixture(t)
	f.devices.set(espID, func(d *device.Device) { d.Metadata["firmware_generation"] = "newer" })
	f.zoned()
	base := "/api/v1/subzone/devices/" + espID + "/subzones"
	f.expect(f.do("POST", base+"/assign", map[string]any{"subzone_id": "north", "assigned_gpios": []int{4}}), 200, "")

	r := f.do("POST", base+"/north/safe-mode", nil)
	f.expect(r, 200, "")
	if r.body["safe_mode_active"] != true || r.body["mqtt_sent"] != true || f.bus.count("subzone/safe") != 1 {
		t.Fatalf("enable %s", r.raw)
	}
	r = f.do("DELETE", base+"/north/safe-mode", nil)
	if r.body["safe_mode_active"] != false || f.bus.count("subzone/safe") != 2 {
		t.Fatalf("disable %s", r.raw)
	}
	f.expect(f.do("POST", base+"/north/safe-mode", map[string]any{"reason": strings.Repeat("r", 201)}), 422,
		"VALIDATION_ERROR")

	f.devices.set(espID, func(d *device.Device) { d.Status = device.StatusOffline })
	f.expect(f.do("POST", base+"/north/safe-mode", nil), 409, "DEVICE_OFFLINE")
	f.devices.set(espID, func(d *device.Device) {
		d.Status = device.StatusOnline
		d.Metadata["reboot_required"] = true
	})
	r = f.do("POST", base+"/north/safe-mode", nil)
	f.expect(r, 409, "DEVICE_UNREACHABLE")
	if !strings.Contains(r.raw, "reboot_required") {
		t.Fatalf("reason not given: %s", r.raw)
	}
}
