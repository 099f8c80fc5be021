package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/relay"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replica is one hub's bus and relay on the test's database.
type replica struct {
	origin string
	bus    *event.Bus
	relay  *relay.Relay
	reg    *prometheus.Registry
	logs   *records
}

// records keeps a replica's log messages and shows them in the test output.
type records struct {
	t    *testing.T
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	r.t.Logf("%s %s%s", rec.Level, rec.Message, b.String())
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}

// count is how many messages starting with prefix were logged.
func (r *records) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func start(t *testing.T, dsn, origin string) *replica {
	t.Helper()
	return startWith(t, relay.Config{DSN: dsn, Origin: origin})
}

// startWith starts a replica whose relay has cfg, completed with its bus,
// logger and registry.
func startWith(t *testing.T, cfg relay.Config) *replica {
	t.Helper()
	r := &replica{origin: cfg.Origin, bus: event.NewBus(), reg: prometheus.NewRegistry(), logs: &records{t: t}}
	cfg.Bus, cfg.Registerer = r.bus, r.reg
	cfg.Logger = slog.New(r.logs).With("replica", cfg.Origin)
	var err error
	r.relay, err = relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.relay.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// pair is two replicas on one fresh database, each hearing the other,
// and a connection of the test's own to that database.
func pair(t *testing.T) (a, b *replica, admin *pgx.Conn) {
	t.Helper()
	dsn := pgtest.DSN(t)
	a, b = start(t, dsn, "replica-a"), start(t, dsn, "replica-b")
	admin, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	linked(t, a, b)
	linked(t, b, a)
	return a, b, admin
}

// linked returns once an event published on from's bus reaches to's: both
// relays are connected. It probes with system events, so tests look at
// other types.
func linked(t *testing.T, from, to *replica) {
	t.Helper()
	sub := to.bus.SubscribeWithRemote(64, event.TypeSystemEvent)
	defer to.bus.Unsubscribe(sub)
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		from.bus.Publish(event.Event{Data: event.SystemEvent{Event: "probe", Message: fmt.Sprint(i)}})
		select {
		case <-sub.C:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("events of %s do not reach %s", from.origin, to.origin)
}

// await is the next event of sub, failing t after within.
func await(t *testing.T, sub *event.Subscription, within time.Duration) event.Event {
	t.Helper()
	select {
	case e := <-sub.C:
		return e
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
		return event.Event{}
	}
}

func reading(esp string, n int) event.SensorData {
	v := float64(n) / 4
	return event.SensorData{EspID: esp, GPIO: 4, SensorType: "temperature", Value: v, RawValue: v * 10,
		ProcessedValue: &v, Unit: "°C", Quality: "good", ProcessingMode: "local", ZoneID: "zone-1",
		Timestamp: int64(1700000000 + n)}
}

func TestEventReachesOnlyOptedInSubscriptionsOfOtherReplicas(t *testing.T) {
	a, b, _ := pair(t)
	bRemote := b.bus.SubscribeWithRemote(16, event.TypeSensorData)
	bPlain := b.bus.Subscribe(16, event.TypeSensorData)
	aRemote := a.bus.SubscribeWithRemote(16, event.TypeSensorData)

	at := time.Date(2026, 3, 1, 8, 0, 0, 123456789, time.UTC)
	sent := reading("ESP_A1", 1)
	a.bus.Publish(event.Event{Time: at, Data: sent})
	if local := await(t, aRemote, time.Second); local.Remote {
		t.Fatalf("A's own event reached A as remote: %+v", local)
	}

	got := await(t, bRemote, 5*time.Second)
	if !got.Remote || !got.Time.Equal(at) || !reflect.DeepEqual(got.Data, sent) {
		t.Fatalf("B received %+v (data %+v), want remote %v %+v", got, got.Data, at, sent)
	}
	// One Publish fills every subscription that takes the event.
	select {
	case e := <-bPlain.C:
		t.Fatalf("B's plain subscription received the remote event %+v", e)
	default:
	}

	// B's event is notified after B received A's, so A hears A's own
	// notification before it: the first event A's bus gets is B's.
	b.bus.Publish(event.Event{Data: reading("ESP_B1", 2)})
	if got := await(t, aRemote, 5*time.Second); !got.Remote || got.Data.(event.SensorData).EspID != "ESP_B1" {
		t.Fatalf("A received %+v (%+v), want only B's event", got, got.Data)
	}
}

func TestBurstArrivesCompleteInOrderAndBatched(t *testing.T) {
	a, b, _ := pair(t)
	const n = 2000
	sub := b.bus.SubscribeWithRemote(n, event.TypeSensorData)
	before := a.relay.Stats()

	for i := range n {
		a.bus.Publish(event.Event{Data: reading("ESP_BURST", i)})
	}
	for i := range n {
		e := await(t, sub, 10*time.Second)
		if want := reading("ESP_BURST", i); !reflect.DeepEqual(e.Data, want) {
			t.Fatalf("event %d is %+v, want %+v", i, e.Data, want)
		}
	}

	// The sender counts a notification once the database has it, which
	// may be just after B has it too.
	deadline := time.Now().Add(5 * time.Second)
	for a.relay.Stats().EventsSent-before.EventsSent < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := a.relay.Stats()
	sent, notifies := st.EventsSent-before.EventsSent, st.Notifications-before.Notifications
	if sent != n {
		t.Fatalf("A sent %d events, want %d", sent, n)
	}
	if notifies*10 > sent {
		t.Fatalf("%d events took %d notifications; want batches of 10 and more", sent, notifies)
	}
	for _, r := range []*replica{a, b} {
		for reason, d := range r.relay.Stats().Dropped {
			if d != 0 {
				t.Errorf("%s dropped %d events (%s)", r.origin, d, reason)
			}
		}
	}
	t.Logf("%d events in %d notifications", sent, notifies)
}

func TestOversizeEventIsDroppedAndCounted(t *testing.T) {
	a, b, _ := pair(t)
	sub := b.bus.SubscribeWithRemote(16, event.TypeSensorData)

	big := reading("ESP_BIG", 1)
	big.SubzoneID = strings.Repeat("x", 8000)
	a.bus.Publish(event.Event{Data: big})
	a.bus.Publish(event.Event{Data: reading("ESP_SMALL", 2)})

	if got := await(t, sub, 5*time.Second); got.Data.(event.SensorData).EspID != "ESP_SMALL" {
		t.Fatalf("B received %s first, want the small event", got.Data.(event.SensorData).EspID)
	}
	// The sender drops in order, so the drop is counted before the small
	// event is sent.
	if d := a.relay.Stats().Dropped["oversize"]; d != 1 {
		t.Fatalf("oversize drops %d, want 1", d)
	}
	if v := metric(t, a.reg, "kaiser_relay_events_dropped_total", "oversize"); v != 1 {
		t.Fatalf(`kaiser_relay_events_dropped_total{reason="oversize"} = %v, want 1`, v)
	}
}

// metric is the value of the counter name with the given reason label
// (none for ""), as the registry exports it.
func metric(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					label = l.GetValue()
				}
			}
			if label == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{reason=%q}", name, reason)
	return 0
}

// terminate ends the connection the relay of origin has in role (listen
// or notify) and waits until it is gone.
func terminate(t *testing.T, admin *pgx.Conn, role, origin string) {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = $1`,
		"kaiser-relay-"+role+"-"+origin).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("terminated %d %s connections of %s, want 1", n, role, origin)
	}
}

// allowConnections opens or closes admin's database to new connections;
// the ones already open stay. It is done from the server's postgres
// database, since a session cannot close its own.
func allowConnections(t *testing.T, admin *pgx.Conn, allow bool) {
	t.Helper()
	ctx := context.Background()
	cfg := admin.Config().Copy()
	db := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx,
		fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %v", pgx.Identifier{db}.Sanitize(), allow)); err != nil {
		t.Fatal(err)
	}
}

func TestListenerReconnectsAndCountsWhatItMissed(t *testing.T) {
	a, b, admin := pair(t)
	sub := b.bus.SubscribeWithRemote(16, event.TypeSensorData)

	// B's listener is cut off and cannot come back while A sends.
	allowConnections(t, admin, false)
	terminate(t, admin, "listen", b.origin)
	sentBefore := a.relay.Stats().EventsSent
	a.bus.Publish(event.Event{Data: reading("ESP_LOST", 1)})
	deadline := time.Now().Add(5 * time.Second)
	for a.relay.Stats().EventsSent == sentBefore && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a.relay.Stats().EventsSent == sentBefore {
		t.Fatal("A did not send while B was cut off")
	}
	allowConnections(t, admin, true)

	linked(t, a, b)
	a.bus.Publish(event.Event{Data: reading("ESP_AFTER", 2)})
	if got := await(t, sub, 5*time.Second); got.Data.(event.SensorData).EspID != "ESP_AFTER" {
		t.Fatalf("B received %s, want the event sent after it reconnected", got.Data.(event.SensorData).EspID)
	}
	if d := b.relay.Stats().Dropped["missed"]; d < 1 {
		t.Fatalf("B counted %d missed events, want at least the one sent while it was away", d)
	}
	if down, up := b.logs.count("relay: not listening"), b.logs.count("relay: listening again"); down != 1 || up != 1 {
		t.Fatalf("B logged the outage %d times and its end %d times, want once each", down, up)
	}
}

func TestSenderReconnects(t *testing.T) {
	a, b, admin := pair(t)
	terminate(t, admin, "notify", a.origin)
	// The first batch after the kill finds the connection dead and is lost;
	// a later one goes out on a new connection.
	linked(t, a, b)
	if d := a.relay.Stats().Dropped["send_failed"]; d < 1 {
		t.Fatalf("A counted %d failed sends, want the batch that found the connection dead", d)
	}
	if down, up := a.logs.count("relay: cannot send"), a.logs.count("relay: sending again"); down != 1 || up != 1 {
		t.Fatalf("A logged the outage %d times and its end %d times, want once each", down, up)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	bus := event.NewBus()
	for name, cfg := range map[string]relay.Config{
		"no bus":       {DSN: "host=/tmp", Origin: "x"},
		"no origin":    {DSN: "host=/tmp", Bus: bus},
		"long channel": {DSN: "host=/tmp", Origin: "x", Bus: bus, Channel: strings.Repeat("c", 64)},
		"bad dsn":      {DSN: "postgres://%zz", Origin: "x", Bus: bus},
	} {
		if _, err := relay.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// A standby only sends and a primary only listens
// (docs/decisions/0029-replicas.md): the standby's events reach the
// primary, and the primary's own events go nowhere.
func TestOneWayRelays(t *testing.T) {
	dsn := pgtest.DSN(t)
	standby := startWith(t, relay.Config{DSN: dsn, Origin: "standby", NoListen: true})
	var seen atomic.Int64
	primary := startWith(t, relay.Config{DSN: dsn, Origin: "primary", NoSend: true,
		Received: func(e event.Event) {
			if d, ok := e.Data.(event.SensorData); ok && d.EspID == "ESP_S1" && e.Remote {
				seen.Add(1)
			}
		}})
	linked(t, standby, primary)

	primary.bus.Publish(event.Event{Data: reading("ESP_P1", 1)})
	standby.bus.Publish(event.Event{Data: reading("ESP_S1", 2)})
	remote := primary.bus.SubscribeWithRemote(16, event.TypeSensorData)
	defer primary.bus.Unsubscribe(remote)
	standby.bus.Publish(event.Event{Data: reading("ESP_S1", 3)})
	if got := await(t, remote, 5*time.Second); got.Data.(event.SensorData).EspID != "ESP_S1" {
		t.Fatalf("the primary received %+v", got.Data)
	}
	// Received saw the event before the bus delivered it.
	if seen.Load() == 0 {
		t.Fatal("Received did not see the remote reading before the bus")
	}
	if st := primary.relay.Stats(); st.EventsSent != 0 || st.Notifications != 0 {
		t.Fatalf("the listen-only primary sent: %+v", st)
	}
	if st := standby.relay.Stats(); st.EventsReceived != 0 {
		t.Fatalf("the send-only standby received: %+v", st)
	}
}

// A batch from a newer replica may hold an event type this one does not
// know: that event is counted as undecodable, the others of the batch
// arrive.
func TestUnknownEventTypeDropsOnlyThatEvent(t *testing.T) {
	_, b, admin := pair(t)
	sub := b.bus.SubscribeWithRemote(16, event.TypeSensorData)
	known, err := event.Encode(event.Event{Data: reading("ESP_KNOWN", 1)})
	if err != nil {
		t.Fatal(err)
	}
	batch := fmt.Sprintf(`{"origin":"replica-newer","seq":0,"events":[{"type":"from_the_future","data":{"x":1}},%s]}`, known)
	if _, err := admin.Exec(context.Background(), `SELECT pg_notify($1, $2)`, relay.DefaultChannel, batch); err != nil {
		t.Fatal(err)
	}
	if got := await(t, sub, 5*time.Second); got.Data.(event.SensorData).EspID != "ESP_KNOWN" || !got.Remote {
		t.Fatalf("B received %+v, want the known event of the batch, remote", got)
	}
	if d := b.relay.Stats().Dropped["decode"]; d != 1 {
		t.Fatalf("B counted %d undecodable events, want the one of unknown type", d)
	}
}
