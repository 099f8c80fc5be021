package event

import (
	"testing"
	"time"
)

func systemEvent(name string) Event {
	return Event{Data: SystemEvent{Event: name}}
}

// receive returns the next event already in s's inbox, or false.
func receive(s *Subscription) (Event, bool) {
	select {
	case e := <-s.C:
		return e, true
	default:
		return Event{}, false
	}
}

func TestPublishReachesEverySubscriber(t *testing.T) {
	b := NewBus()
	first, second := b.Subscribe(4), b.Subscribe(4)

	b.Publish(systemEvent("startup_complete"))

	for i, s := range []*Subscription{first, second} {
		e, ok := receive(s)
		if !ok {
			t.Fatalf("subscriber %d received nothing", i)
		}
		if d, _ := e.Data.(SystemEvent); d.Event != "startup_complete" {
			t.Fatalf("subscriber %d received %+v", i, e)
		}
	}
}

func TestPublishStampsOnlyMissingTimes(t *testing.T) {
	b := NewBus()
	s := b.Subscribe(2)
	at := time.Date(2026, 1, 5, 8, 15, 30, 0, time.UTC)

	before := time.Now()
	b.Publish(systemEvent("stamped"))
	b.Publish(Event{Time: at, Data: SystemEvent{Event: "given"}})

	stamped, _ := receive(s)
	if stamped.Time.Before(before) {
		t.Fatalf("zero time not stamped with the publish time: %v", stamped.Time)
	}
	given, _ := receive(s)
	if !given.Time.Equal(at) {
		t.Fatalf("given time replaced: %v", given.Time)
	}
}

func TestSubscribeFiltersByType(t *testing.T) {
	b := NewBus()
	statuses := b.Subscribe(4, TypeDeviceStatus, TypeEspHealth)

	b.Publish(Event{Data: SensorData{EspID: "ESP_1"}})
	b.Publish(Event{Data: DeviceStatus{EspID: "ESP_1", Status: "online"}})
	b.Publish(Event{Data: EspHealth{EspID: "ESP_1"}})

	var got []Type
	for {
		e, ok := receive(statuses)
		if !ok {
			break
		}
		got = append(got, e.Type())
	}
	if len(got) != 2 || got[0] != TypeDeviceStatus || got[1] != TypeEspHealth {
		t.Fatalf("received %v, want [device_status esp_health]", got)
	}
}

func TestFullInboxDropsAndCounts(t *testing.T) {
	b := NewBus()
	slow, roomy := b.Subscribe(2), b.Subscribe(10)

	for range 5 {
		b.Publish(systemEvent("tick"))
	}

	if n := slow.Dropped(); n != 3 {
		t.Fatalf("slow subscriber dropped %d, want 3", n)
	}
	if n := roomy.Dropped(); n != 0 {
		t.Fatalf("roomy subscriber dropped %d", n)
	}
	if n := len(slow.C); n != 2 {
		t.Fatalf("slow inbox holds %d, want the first 2", n)
	}
}

func TestUnsubscribedInboxStaysQuiet(t *testing.T) {
	b := NewBus()
	s := b.Subscribe(4)
	b.Unsubscribe(s)

	b.Publish(systemEvent("after"))

	if e, ok := receive(s); ok {
		t.Fatalf("unsubscribed inbox received %+v", e)
	}
}

func TestWants(t *testing.T) {
	tests := []struct {
		name string
		subs [][]Type // one entry per subscription; nil = every type
		ask  Type
		want bool
	}{
		{name: "no subscriber", ask: TypeSensorData, want: false},
		{
			name: "subscriber of every type",
			subs: [][]Type{nil},
			ask:  TypeSensorData,
			want: true,
		},
		{
			name: "subscriber of the type",
			subs: [][]Type{{TypeSensorData}},
			ask:  TypeSensorData,
			want: true,
		},
		{
			name: "subscriber of other types",
			subs: [][]Type{{TypeDeviceStatus}},
			ask:  TypeSensorData,
			want: false,
		},
		{
			name: "one of several subscribers",
			subs: [][]Type{{TypeDeviceStatus}, {TypeEspHealth, TypeSensorData}},
			ask:  TypeSensorData,
			want: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBus()
			for _, types := range tt.subs {
				b.Subscribe(1, types...)
			}
			if got := b.Wants(tt.ask); got != tt.want {
				t.Fatalf("Wants(%s) = %v, want %v", tt.ask, got, tt.want)
			}
		})
	}
}

func TestWantsForgetsUnsubscribed(t *testing.T) {
	b := NewBus()
	s := b.Subscribe(1, TypeSensorData)
	b.Unsubscribe(s)
	if b.Wants(TypeSensorData) {
		t.Fatal("an unsubscribed subscription still counts")
	}
}

func TestEventTypeFollowsPayload(t *testing.T) {
	tests := []struct {
		payload Payload
		want    Type
	}{
		{SensorData{}, TypeSensorData},
		{SensorHealth{}, TypeSensorHealth},
		{EspHealth{}, TypeEspHealth},
		{DeviceStatus{}, TypeDeviceStatus},
		{DeviceDiscovered{}, TypeDeviceDiscovered},
		{DeviceDiscovered{Rediscovered: true}, TypeDeviceRediscovered},
		{DeviceApproved{}, TypeDeviceApproved},
		{DeviceRejected{}, TypeDeviceRejected},
		{ConfigResponse{}, TypeConfigResponse},
		{Notification{}, TypeNotification},
		{SystemEvent{}, TypeSystemEvent},
	}
	for _, tt := range tests {
		t.Run(string(tt.want), func(t *testing.T) {
			if got := (Event{Data: tt.payload}).Type(); got != tt.want {
				t.Fatalf("type %q, want %q", got, tt.want)
			}
		})
	}
	if got := (Event{}).Type(); got != "" {
		t.Fatalf("event without payload has type %q", got)
	}
}

func TestRemoteEventsReachOnlyOptedInSubscriptions(t *testing.T) {
	b := NewBus()
	local := b.Subscribe(4)
	remote := b.SubscribeWithRemote(4)
	remoteSensors := b.SubscribeWithRemote(4, TypeSensorData)

	at := time.Unix(1700000000, 5)
	b.Publish(Event{Time: at, Data: SystemEvent{Event: "relayed"}, Remote: true})

	if e, ok := receive(local); ok {
		t.Fatalf("plain subscription received the remote event %+v", e)
	}
	if e, ok := receive(remoteSensors); ok {
		t.Fatalf("subscription of sensor data received %+v", e)
	}
	e, ok := receive(remote)
	if !ok {
		t.Fatal("opted-in subscription received nothing")
	}
	if !e.Remote || !e.Time.Equal(at) || e.Data != (SystemEvent{Event: "relayed"}) {
		t.Fatalf("opted-in subscription received %+v", e)
	}

	// A local event still reaches both kinds.
	b.Publish(systemEvent("local"))
	for name, s := range map[string]*Subscription{"plain": local, "opted-in": remote} {
		if e, ok := receive(s); !ok || e.Remote {
			t.Fatalf("%s subscription: local event %+v, received %v", name, e, ok)
		}
	}
}

func TestTapRunsOnThePublishersGoroutine(t *testing.T) {
	b := NewBus()
	var got []Event
	tap := b.TapWithRemote(func(e Event) { got = append(got, e) }, TypeSystemEvent)

	b.Publish(systemEvent("local"))
	b.Publish(Event{Data: SystemEvent{Event: "relayed"}, Remote: true})
	b.Publish(Event{Data: SensorData{EspID: "ESP_1"}})

	// No goroutine in between: the events are there when Publish returns,
	// in order, and only the tapped type.
	if len(got) != 2 || got[0].Data != (SystemEvent{Event: "local"}) || !got[1].Remote {
		t.Fatalf("tap received %+v", got)
	}
	if !b.Wants(TypeSystemEvent) || b.Wants(TypeSensorData) {
		t.Fatal("Wants does not follow the tap's types")
	}

	b.Unsubscribe(tap)
	b.Publish(systemEvent("after"))
	if len(got) != 2 {
		t.Fatalf("unsubscribed tap received %+v", got[2:])
	}
}

func TestTapMayUnsubscribeFromInside(t *testing.T) {
	b := NewBus()
	var calls int
	var tap *Subscription
	tap = b.TapWithRemote(func(Event) {
		calls++
		b.Unsubscribe(tap) // the live feed does this when its last connection goes
	})
	other := b.Subscribe(4)

	b.Publish(systemEvent("one"))
	b.Publish(systemEvent("two"))

	if calls != 1 {
		t.Fatalf("tap called %d times, want 1", calls)
	}
	for _, want := range []string{"one", "two"} {
		if e, ok := receive(other); !ok || e.Data != (SystemEvent{Event: want}) {
			t.Fatalf("other subscriber: %+v, %v; want %s", e, ok, want)
		}
	}
}

func TestSubscribeWhilePublishing(t *testing.T) {
	b := NewBus()
	stay := b.Subscribe(10000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			b.Unsubscribe(b.Subscribe(1))
		}
	}()
	for i := 0; i < 1000; i++ {
		b.Publish(systemEvent("e"))
	}
	<-done

	// The changes around it never hid the subscriber that stayed.
	if n := len(stay.C); n != 1000 || stay.Dropped() != 0 {
		t.Fatalf("steady subscriber got %d events, dropped %d", n, stay.Dropped())
	}
}
