package live

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// queueOnly is a connection without a socket: offer and next alone.
func queueOnly(cfg Config) *conn {
	f := New(cfg, nil, nil)
	return &conn{feed: f, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func drain(c *conn) []string {
	var got []string
	for {
		m, _ := c.next()
		if m == nil {
			return got
		}
		got = append(got, string(m.bytes()))
	}
}

// State messages with the same key replace the queued one in place; event
// messages are never coalesced; emergencies jump the queue.
func TestQueueCoalescesStateMessages(t *testing.T) {
	c := queueOnly(Config{})
	msg := func(typ event.Type, key, body string) *outMsg { return &outMsg{typ: typ, key: key, data: []byte(body)} }
	data := event.SensorData{EspID: "E1", GPIO: 34, SensorType: "ph"}

	c.offer(msg(event.TypeSensorData, "k1", "v1"), data)
	c.offer(msg(event.TypeSystemEvent, "", "e1"), data)
	c.offer(msg(event.TypeSensorData, "k1", "v2"), data)
	c.offer(msg(event.TypeSensorData, "k2", "w1"), data)
	c.offer(msg(event.TypeSensorData, "k1", "v3"), data)
	c.offer(msg(event.TypeEmergency, "", "stop"), data)

	if got := strings.Join(drain(c), ","); got != "stop,v3,e1,w1" {
		t.Fatalf("order %v", got)
	}
	if n := c.feed.coalesced.Load(); n != 2 {
		t.Fatalf("coalesced %d", n)
	}

	// Once sent, a key queues anew instead of replacing the sent message.
	c.offer(msg(event.TypeSensorData, "k1", "v4"), data)
	if got := strings.Join(drain(c), ","); got != "v4" {
		t.Fatalf("after drain %v", got)
	}

	// Filters apply before queueing: a filtered-out message costs nothing.
	c.filters = filterSet{{EspIDs: []string{"E2"}}}
	c.offer(msg(event.TypeSensorData, "k9", "x"), data)
	if got := drain(c); len(got) != 0 {
		t.Fatalf("filtered message queued: %v", got)
	}
}

func TestQueueOverflowShutsTheConnection(t *testing.T) {
	c := queueOnly(Config{QueueMax: 2})
	for i := range 3 {
		c.offer(&outMsg{typ: event.TypeSystemEvent, data: []byte{byte('a' + i)}}, nil)
	}

	select {
	case <-c.done:
	default:
		t.Fatal("a third message over a bound of 2 left the connection open")
	}
	if n := c.feed.slow.Load(); n != 1 {
		t.Fatalf("slow disconnects %d", n)
	}
}

// Exactly the state messages of docs/api.md §17.4 coalesce; every other event is
// delivered one by one.
func TestOnlyStateMessagesHaveASubject(t *testing.T) {
	tests := []struct {
		payload event.Payload
		state   bool
	}{
		{event.SensorData{}, true},
		{event.SensorHealth{}, true},
		{event.EspHealth{}, true},
		{event.DeviceStatus{}, true},
		{event.DeviceDiscovered{}, false},
		{event.DeviceApproved{}, false},
		{event.DeviceRejected{}, false},
		{event.ConfigResponse{}, false},
		{event.Notification{}, false},
		{event.SystemEvent{}, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.payload.EventType()), func(t *testing.T) {
			if _, ok := tt.payload.(stateful); ok != tt.state {
				t.Fatalf("stateful = %v, want %v", ok, tt.state)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	ph := event.SensorData{EspID: "ESP_1", GPIO: 34, SensorType: "ph"}
	approved := event.DeviceApproved{DeviceID: "ESP_2"}
	system := event.SystemEvent{Event: "startup_complete"}
	tests := []struct {
		name   string
		filter filters
		data   event.Payload
		want   bool
	}{
		{"no filter", filters{}, ph, true},
		{"type listed", filters{Types: []string{"esp_health", "sensor_data"}}, ph, true},
		{"type not listed", filters{Types: []string{"esp_health"}}, ph, false},
		{"esp_id listed", filters{EspIDs: []string{"ESP_1"}}, ph, true},
		{"esp_id not listed", filters{EspIDs: []string{"ESP_9"}}, ph, false},
		{"esp_id compared exactly", filters{EspIDs: []string{"esp_1"}}, ph, false},
		{"device_id when there is no esp_id", filters{EspIDs: []string{"ESP_2"}}, approved, true},
		{"device_id not listed", filters{EspIDs: []string{"ESP_1"}}, approved, false},
		{"no device passes esp_ids", filters{EspIDs: []string{"ESP_1"}}, system, true},
		{"sensor type case-insensitive", filters{SensorTypes: []string{"PH"}}, ph, true},
		{"sensor type not listed", filters{SensorTypes: []string{"ec"}}, ph, false},
		{"no sensor passes sensor_types", filters{SensorTypes: []string{"ec"}}, approved, true},
		{
			name:   "every dimension must pass",
			filter: filters{Types: []string{"sensor_data"}, EspIDs: []string{"ESP_1"}, SensorTypes: []string{"ec"}},
			data:   ph,
			want:   false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.match(tt.data.EventType(), tt.data); got != tt.want {
				t.Fatalf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFiltersWithout(t *testing.T) {
	f := filters{Types: []string{"sensor_data", "esp_health"}, EspIDs: []string{"E1", "E2"}, SensorTypes: []string{"ph"}}
	got, ok := f.without(filters{Types: []string{"esp_health"}, EspIDs: []string{"E2"}})
	if !ok || strings.Join(got.Types, ",") != "sensor_data" || strings.Join(got.EspIDs, ",") != "E1" ||
		strings.Join(got.SensorTypes, ",") != "ph" {
		t.Fatalf("without: %+v %v", got, ok)
	}
	// Emptying a dimension that restricted the filter would widen it to everything.
	if _, ok := f.without(filters{EspIDs: []string{"E1", "E2"}}); ok {
		t.Fatal("a filter whose esp_ids are all removed must be dropped")
	}
	unrestricted := filters{Types: []string{"sensor_data"}}
	if got, ok := unrestricted.without(filters{EspIDs: []string{"E1"}}); !ok || len(got.Types) != 1 {
		t.Fatalf("removing values of a dimension the filter does not restrict: %+v %v", got, ok)
	}
}

func TestFilterSet(t *testing.T) {
	ph := event.SensorData{EspID: "E1", SensorType: "ph"}
	ec := event.SensorData{EspID: "E2", SensorType: "ec"}
	var set filterSet
	if !set.match(ph.EventType(), ph) {
		t.Fatal("an empty set passes everything")
	}
	set, _ = set.add(filters{EspIDs: []string{"E1"}})
	set, _ = set.add(filters{SensorTypes: []string{"ec"}})
	set, _ = set.add(filters{EspIDs: []string{"E1"}}) // identical: not added twice
	if len(set) != 2 || !set.match(ph.EventType(), ph) || !set.match(ec.EventType(), ec) {
		t.Fatalf("set %+v must hold two filters and pass both readings", set)
	}
	if set.match(event.TypeSensorData, event.SensorData{EspID: "E3", SensorType: "ph"}) {
		t.Fatal("a reading no filter passes was delivered")
	}

	for range maxFilters - len(set) {
		var err error
		if set, err = set.add(filters{Types: []string{fmt.Sprint(len(set))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := set.add(filters{Types: []string{"one too many"}}); !errors.Is(err, errSetFull) {
		t.Fatalf("filter %d: %v", maxFilters+1, err)
	}
	if _, err := filterSet(nil).add(filters{Types: make([]string, 65)}); !errors.Is(err, errFilterLimits) {
		t.Fatalf("65 types: %v", err)
	}

	two := filterSet{{EspIDs: []string{"E1", "E2"}}, {SensorTypes: []string{"ec"}}}
	if got := two.remove(filters{SensorTypes: []string{"ec"}}); len(got) != 1 || len(got[0].EspIDs) != 2 {
		t.Fatalf("removing the equal filter: %+v", got)
	}
	got := two.remove(filters{EspIDs: []string{"E2"}, SensorTypes: []string{"ec"}, Types: []string{"x"}})
	if len(got) != 1 || strings.Join(got[0].EspIDs, ",") != "E1" {
		t.Fatalf("removing values: %+v, want the E1 filter only (the ec filter lost its only type)", got)
	}
}

// The envelope of docs/api.md §17.2, byte for byte as the map-based encoding wrote it.
func TestEnvelope(t *testing.T) {
	at := int64(1767600000)
	tests := []struct {
		name string
		data any
		want string
	}{
		{
			name: "system_event",
			data: event.SystemEvent{Event: "startup_complete", Message: "hub started", Timestamp: at},
			want: `{"data":{"event":"startup_complete","message":"hub started","timestamp":1767600000},` +
				`"timestamp":1767600000,"type":"system_event"}`,
		},
		{name: "empty", data: struct{}{}, want: `{"data":{},"timestamp":1767600000,"type":"pong"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := "pong"
			if p, ok := tt.data.(event.Payload); ok {
				typ = string(p.EventType())
			}
			if got := string(envelope(typ, time.Unix(at, 0), tt.data)); got != tt.want {
				t.Fatalf("envelope\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(Config{}, event.NewBus(), reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}

	got := map[string]bool{}
	for _, mf := range families {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"god_kaiser_ws_connections",
		"god_kaiser_ws_messages_sent_total",
		"god_kaiser_ws_messages_coalesced_total",
		"god_kaiser_ws_slow_client_disconnects_total",
	} {
		if !got[name] {
			t.Errorf("metric %s not registered (have %v)", name, got)
		}
	}
}

// The feed taps the event stream only while connections exist: each
// detach must remove its tap, or the producers would pay for a feed nobody
// watches, and nothing it started may outlive it.
func TestAttachDetachLeavesNoTapOrGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	bus := event.NewBus()
	f := New(Config{}, bus, nil)
	defer f.Close()

	for range 100 {
		f.mu.Lock()
		f.attach()
		if !bus.Wants(event.TypeSystemEvent) {
			t.Fatal("attached feed does not tap the bus")
		}
		f.detach()
		f.mu.Unlock()
	}

	if bus.Wants(event.TypeSystemEvent) {
		t.Fatal("a detached feed still taps the bus")
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("after 100 attach/detach cycles: %v", err)
	}
}
