package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

// The service and its store must leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// notice is what a test reads from a `notification` event.
type notice struct {
	UserID        int64
	ID            string
	Action        string
	Severity      string
	Status        string
	Title         string
	CorrelationID string
	Time          time.Time
}

// notificationOf is the one place that knows the event's payload shape.
func notificationOf(t *testing.T, e event.Event) notice {
	t.Helper()
	n, ok := e.Data.(event.Notification)
	if !ok {
		t.Fatalf("event type %q (%T), want notification", e.Type(), e.Data)
	}
	return notice{
		UserID:        n.UserID,
		ID:            n.ID,
		Action:        n.Action,
		Severity:      n.Severity,
		Status:        n.Status,
		Title:         n.Title,
		CorrelationID: n.CorrelationID,
		Time:          e.Time,
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a service over a real SQLite store, with a subscriber on its bus.
type fixture struct {
	svc   *Service
	st    *sqlite.Store
	bus   *event.Bus
	sub   *event.Subscription
	clock *clock

	mu       sync.Mutex
	users    []int64
	usersErr error
}

func newFixture(t *testing.T, users ...int64) *fixture {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })

	bus := event.NewBus()
	f := &fixture{
		st:    st,
		bus:   bus,
		sub:   bus.Subscribe(64, "notification"),
		clock: &clock{t: time.Now().UTC().Truncate(time.Second)},
		users: users,
	}
	f.svc = f.newService()
	return f
}

// newService builds a service over the fixture's store and bus, as a restart would.
func (f *fixture) newService() *Service {
	svc := New(f.st, f.bus, f.activeUsers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	svc.now = f.clock.Now
	return svc
}

func (f *fixture) activeUsers(context.Context) ([]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.users...), f.usersErr
}

func (f *fixture) setUsers(users []int64, err error) {
	f.mu.Lock()
	f.users, f.usersErr = users, err
	f.mu.Unlock()
}

// notices takes every event published so far; publishing is synchronous, so
// whatever a call emitted is in the inbox when it returns.
func (f *fixture) notices(t *testing.T) []notice {
	t.Helper()
	var out []notice
	for {
		select {
		case e := <-f.sub.C:
			out = append(out, notificationOf(t, e))
		default:
			if n := f.sub.Dropped(); n > 0 {
				t.Fatalf("%d events dropped; enlarge the test inbox", n)
			}
			return out
		}
	}
}

// only returns the single notification of user, failing otherwise.
func (f *fixture) only(t *testing.T, user int64) store.Notification {
	t.Helper()
	ns, total, err := f.svc.List(context.Background(), store.NotificationFilter{UserID: user})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || total != 1 {
		t.Fatalf("user %d has %d notifications (total %d), want 1", user, len(ns), total)
	}
	return ns[0]
}

func (f *fixture) raise(t *testing.T, s Spec) {
	t.Helper()
	if err := f.svc.Raise(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func spec(key, severity string, value float64) Spec {
	return Spec{
		Key:      key,
		Severity: severity,
		Category: "data_quality",
		Source:   "sensor_threshold",
		Title:    severity + " threshold exceeded",
		Body:     "reading outside its band",
		Metadata: map[string]any{"value": value},
	}
}

const key = "threshold_ESP_A1B2C3_4_ds18b20"

// wantNotices checks that one event of action and status reached each user,
// for the notification copy that user owns.
func wantNotices(t *testing.T, got []notice, alertID, action, status string, users ...int64) {
	t.Helper()
	if len(got) != len(users) {
		t.Fatalf("events %+v, want one %s event for each of users %v", got, action, users)
	}
	for i, u := range users {
		n := got[i]
		want := notice{
			UserID:        u,
			ID:            copyID(alertID, u),
			Action:        action,
			Status:        status,
			CorrelationID: key,
		}
		if n.UserID != want.UserID || n.ID != want.ID || n.Action != want.Action || n.Status != want.Status ||
			n.CorrelationID != want.CorrelationID {
			t.Fatalf("event %d = %+v, want %+v", i, n, want)
		}
	}
}

func copyID(alertID string, user int64) string { return alertID + "-" + strconv.FormatInt(user, 10) }

func TestRaiseCreatesAnAlertWithACopyPerUser(t *testing.T) {
	f := newFixture(t, 1, 2)
	ctx := context.Background()

	f.raise(t, spec(key, "warning", 31.5))

	if !f.svc.IsOpen(key) {
		t.Fatal("raised alert is not open")
	}
	n1, n2 := f.only(t, 1), f.only(t, 2)
	if n1.Alert.ID != n2.Alert.ID || n1.ID == n2.ID {
		t.Fatalf("copies %s and %s must share alert %s and differ in id", n1.ID, n2.ID, n1.Alert.ID)
	}
	a := n1.Alert
	if a.Status != "active" || a.Occurrences != 1 || a.Severity != "warning" || a.Key != key || a.Suppressed {
		t.Fatalf("new alert %+v", a)
	}
	var md map[string]any
	if err := json.Unmarshal(a.Metadata, &md); err != nil || md["value"] != 31.5 {
		t.Fatalf("metadata %s (%v), want the spec's value", a.Metadata, err)
	}
	if ns, _, _ := f.svc.List(ctx, store.NotificationFilter{UserID: 3}); len(ns) != 0 {
		t.Fatalf("a user outside the active list got %d notifications", len(ns))
	}

	got := f.notices(t)
	wantNotices(t, got, a.ID, "new", "active", 1, 2)
	if got[0].Severity != "warning" || !got[0].Time.Equal(f.clock.Now()) {
		t.Fatalf("event %+v: want severity warning at %v", got[0], f.clock.Now())
	}
}

func TestRaiseWhileOpen(t *testing.T) {
	tests := []struct {
		name         string
		first, again string
		wantSeverity string
		wantTitle    string
		wantNotified bool // the users are told again
	}{
		{
			name:         "same severity",
			first:        "warning",
			again:        "warning",
			wantSeverity: "warning",
			wantTitle:    "warning threshold exceeded",
		},
		{
			name:         "lower severity",
			first:        "critical",
			again:        "warning",
			wantSeverity: "critical",
			wantTitle:    "critical threshold exceeded",
		},
		{
			name:         "higher severity escalates",
			first:        "warning",
			again:        "critical",
			wantSeverity: "critical",
			wantTitle:    "critical threshold exceeded",
			wantNotified: true,
		},
		{
			name:         "info to warning escalates",
			first:        "info",
			again:        "warning",
			wantSeverity: "warning",
			wantTitle:    "warning threshold exceeded",
			wantNotified: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 1, 2)
			f.raise(t, spec(key, tt.first, 30))
			created := f.only(t, 1).Alert
			f.notices(t)

			f.clock.Advance(time.Minute)
			f.raise(t, spec(key, tt.again, 35))

			a := f.only(t, 1).Alert
			if a.ID != created.ID || a.Occurrences != 2 || a.Status != "active" {
				t.Fatalf("alert %+v: want alert %s active with 2 occurrences", a, created.ID)
			}
			if a.Severity != tt.wantSeverity || a.Title != tt.wantTitle {
				t.Fatalf("severity %q title %q, want %q %q", a.Severity, a.Title, tt.wantSeverity, tt.wantTitle)
			}
			if !a.UpdatedAt.Equal(f.clock.Now()) || !a.CreatedAt.Equal(created.CreatedAt) {
				t.Fatalf("created %v updated %v: want creation kept and update at %v", a.CreatedAt, a.UpdatedAt,
					f.clock.Now())
			}
			var md map[string]any
			if err := json.Unmarshal(a.Metadata, &md); err != nil || md["value"] != 35.0 {
				t.Fatalf("metadata %s (%v), want the latest value", a.Metadata, err)
			}

			got := f.notices(t)
			if !tt.wantNotified {
				if len(got) != 0 {
					t.Fatalf("an ongoing breach notified again: %+v", got)
				}
				return
			}
			// Escalation routes the alert again, announced like a new one.
			wantNotices(t, got, a.ID, "new", "active", 1, 2)
			if got[0].Severity != tt.wantSeverity {
				t.Fatalf("escalation event severity %q, want %q", got[0].Severity, tt.wantSeverity)
			}
		})
	}
}

func TestSuppressedAlertIsStoredButNotRouted(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	s := spec(key, "warning", 30)
	s.Suppressed = true

	f.raise(t, s)
	s.Severity = "critical"
	f.raise(t, s)

	if got := f.notices(t); len(got) != 0 {
		t.Fatalf("a suppressed alert was routed: %+v", got)
	}
	if ns, _, _ := f.svc.List(ctx, store.NotificationFilter{UserID: 1}); len(ns) != 0 {
		t.Fatalf("a suppressed alert got %d notification copies", len(ns))
	}
	open, err := f.st.OpenAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || !open[0].Suppressed || open[0].Occurrences != 2 || open[0].Severity != "critical" {
		t.Fatalf("stored alerts %+v: want one suppressed critical alert with 2 occurrences", open)
	}
}

func TestClearAutoResolves(t *testing.T) {
	f := newFixture(t, 1, 2)
	f.raise(t, spec(key, "warning", 30))
	created := f.only(t, 1).Alert
	f.notices(t)
	f.clock.Advance(time.Minute)

	if err := f.svc.Clear(context.Background(), key); err != nil {
		t.Fatal(err)
	}

	if f.svc.IsOpen(key) {
		t.Fatal("cleared alert is still open")
	}
	for _, u := range []int64{1, 2} {
		a := f.only(t, u).Alert
		resolvedNow := a.ResolvedAt != nil && a.ResolvedAt.Equal(f.clock.Now())
		if a.Status != "resolved" || a.ResolvedBy != "system" || !resolvedNow {
			t.Fatalf("user %d's copy after clear: %+v", u, a)
		}
	}
	wantNotices(t, f.notices(t), created.ID, "updated", "resolved", 1, 2)

	t.Run("clearing a key without an open alert is a no-op", func(t *testing.T) {
		if err := f.svc.Clear(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		if got := f.notices(t); len(got) != 0 {
			t.Fatalf("clear without an open alert emitted %+v", got)
		}
	})
}

func TestBreachAfterAutoResolveIsANewAlert(t *testing.T) {
	tests := []struct {
		name   string
		after  time.Duration
		refire bool
	}{
		{name: "inside the chatter window", after: time.Minute, refire: true},
		{name: "after the chatter window", after: 31 * time.Minute, refire: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 1)
			ctx := context.Background()
			f.raise(t, spec(key, "warning", 30))
			first := f.only(t, 1).Alert
			if err := f.svc.Clear(ctx, key); err != nil {
				t.Fatal(err)
			}
			f.notices(t)

			f.clock.Advance(tt.after)
			f.raise(t, spec(key, "warning", 31))

			ns, _, err := f.svc.List(ctx, store.NotificationFilter{UserID: 1, Status: "active"})
			if err != nil || len(ns) != 1 {
				t.Fatalf("active notifications %+v (%v), want the new one", ns, err)
			}
			second := ns[0].Alert
			if second.ID == first.ID || second.Occurrences != 1 {
				t.Fatalf("second breach %+v: want a new alert, not %s", second, first.ID)
			}
			// Chatter protection skips only email and webhook; the WebSocket still fires.
			wantNotices(t, f.notices(t), second.ID, "new", "active", 1)

			var md map[string]any
			if err := json.Unmarshal(second.Metadata, &md); err != nil {
				t.Fatalf("metadata %s: %v", second.Metadata, err)
			}
			if got := md["refire"] == true; got != tt.refire {
				t.Fatalf("stored metadata %s: refire %v, want %v", second.Metadata, got, tt.refire)
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	type step struct {
		user   int64
		action string
	}
	tests := []struct {
		name       string
		steps      []step
		wantStatus string
		// wantEvents is the number of events the last step emits (one per user or none).
		wantEvents int
		wantAckBy  string
		wantResBy  string
		wantOpen   bool
	}{
		{
			name:       "acknowledge",
			steps:      []step{{1, "acknowledge"}},
			wantStatus: "acknowledged",
			wantEvents: 2,
			wantAckBy:  "user1",
			wantOpen:   true,
		},
		{
			name:       "resolve an active alert",
			steps:      []step{{1, "resolve"}},
			wantStatus: "resolved",
			wantEvents: 2,
			wantResBy:  "user1",
		},
		{
			name:       "resolve an acknowledged alert through the other copy",
			steps:      []step{{1, "acknowledge"}, {2, "resolve"}},
			wantStatus: "resolved",
			wantEvents: 2,
			wantAckBy:  "user1",
			wantResBy:  "user2",
		},
		{
			name:       "acknowledge twice is a no-op",
			steps:      []step{{1, "acknowledge"}, {2, "acknowledge"}},
			wantStatus: "acknowledged",
			wantEvents: 0,
			wantAckBy:  "user1",
			wantOpen:   true,
		},
		{
			name:       "resolved is terminal",
			steps:      []step{{1, "resolve"}, {2, "acknowledge"}},
			wantStatus: "resolved",
			wantEvents: 0,
			wantResBy:  "user1",
		},
		{
			name:       "resolve twice is a no-op",
			steps:      []step{{1, "resolve"}, {2, "resolve"}},
			wantStatus: "resolved",
			wantEvents: 0,
			wantResBy:  "user1",
		},
		{
			name:       "unknown action is a no-op",
			steps:      []step{{1, "snooze"}},
			wantStatus: "active",
			wantEvents: 0,
			wantOpen:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 1, 2)
			ctx := context.Background()
			f.raise(t, spec(key, "warning", 30))
			alertID := f.only(t, 1).Alert.ID

			var got store.Notification
			for i, st := range tt.steps {
				f.notices(t)
				f.clock.Advance(time.Minute)
				var err error
				got, err = f.svc.Transition(ctx, st.user, copyID(alertID, st.user), st.action, usernameOf(st.user))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			last := tt.steps[len(tt.steps)-1]

			// The reply is the acting user's copy, with the shared lifecycle.
			if got.ID != copyID(alertID, last.user) || got.Status != tt.wantStatus {
				t.Fatalf("reply %s status %q, want %s %q", got.ID, got.Status, copyID(alertID, last.user), tt.wantStatus)
			}
			for _, u := range []int64{1, 2} {
				a := f.only(t, u).Alert
				if a.Status != tt.wantStatus || a.AcknowledgedBy != tt.wantAckBy || a.ResolvedBy != tt.wantResBy {
					t.Fatalf("user %d's copy: status %q acknowledged by %q resolved by %q; want %q %q %q", u, a.Status,
						a.AcknowledgedBy, a.ResolvedBy, tt.wantStatus, tt.wantAckBy, tt.wantResBy)
				}
				if (a.AcknowledgedAt != nil) != (tt.wantAckBy != "") || (a.ResolvedAt != nil) != (tt.wantResBy != "") {
					t.Fatalf("user %d's copy: acknowledged at %v, resolved at %v", u, a.AcknowledgedAt, a.ResolvedAt)
				}
			}
			if f.svc.IsOpen(key) != tt.wantOpen {
				t.Fatalf("open %v, want %v", f.svc.IsOpen(key), tt.wantOpen)
			}

			events := f.notices(t)
			if tt.wantEvents == 0 {
				if len(events) != 0 {
					t.Fatalf("a no-op emitted %+v", events)
				}
				return
			}
			wantNotices(t, events, alertID, "updated", tt.wantStatus, 1, 2)
		})
	}
}

func usernameOf(user int64) string { return "user" + strconv.FormatInt(user, 10) }

func TestTransitionOfSomeoneElsesNotification(t *testing.T) {
	f := newFixture(t, 1, 2)
	ctx := context.Background()
	f.raise(t, spec(key, "warning", 30))
	alertID := f.only(t, 1).Alert.ID
	f.notices(t)

	tests := []struct {
		name string
		user int64
		id   string
	}{
		{name: "another user's copy", user: 1, id: copyID(alertID, 2)},
		{name: "unknown notification", user: 1, id: copyID("no-such-alert", 1)},
		{name: "user without copies", user: 3, id: copyID(alertID, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.svc.Transition(ctx, tt.user, tt.id, "resolve", "intruder"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("error %v, want ErrNotFound", err)
			}
			if _, err := f.svc.Get(ctx, tt.user, tt.id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get: %v, want ErrNotFound", err)
			}
		})
	}
	if !f.svc.IsOpen(key) || len(f.notices(t)) != 0 {
		t.Fatal("a refused transition changed the alert")
	}
}

func TestManualResolveDisarmsTheKey(t *testing.T) {
	steps := []struct {
		name    string
		advance time.Duration
		wantNew bool
	}{
		{name: "breach right after the resolve", advance: time.Second, wantNew: false},
		{name: "breach inside the dedup window", advance: 29*time.Minute + 58*time.Second, wantNew: false},
		{name: "breach when the window has passed", advance: time.Second, wantNew: true},
	}

	f := newFixture(t, 1)
	ctx := context.Background()
	f.raise(t, spec(key, "warning", 30))
	first := f.only(t, 1).Alert
	if _, err := f.svc.Transition(ctx, 1, copyID(first.ID, 1), "resolve", "user1"); err != nil {
		t.Fatal(err)
	}
	f.notices(t)

	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			f.clock.Advance(st.advance)
			f.raise(t, spec(key, "warning", 31))

			ns, _, err := f.svc.List(ctx, store.NotificationFilter{UserID: 1, Status: "active"})
			if err != nil {
				t.Fatal(err)
			}
			events := f.notices(t)
			if !st.wantNew {
				if len(ns) != 0 || len(events) != 0 || f.svc.IsOpen(key) {
					t.Fatalf("disarmed key alerted: notifications %+v, events %+v", ns, events)
				}
				return
			}
			if len(ns) != 1 || ns[0].Alert.ID == first.ID {
				t.Fatalf("active notifications %+v, want one of a new alert", ns)
			}
			wantNotices(t, events, ns[0].Alert.ID, "new", "active", 1)
		})
	}
}

func TestClearRearmsAManuallyResolvedKey(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	f.raise(t, spec(key, "warning", 30))
	first := f.only(t, 1).Alert
	if _, err := f.svc.Transition(ctx, 1, copyID(first.ID, 1), "resolve", "user1"); err != nil {
		t.Fatal(err)
	}

	// A reading back inside all bands re-arms the key at once.
	if err := f.svc.Clear(ctx, key); err != nil {
		t.Fatal(err)
	}
	f.notices(t)
	f.clock.Advance(time.Second)
	f.raise(t, spec(key, "warning", 31))

	if !f.svc.IsOpen(key) {
		t.Fatal("breach after the key was re-armed did not open an alert")
	}
	if got := f.notices(t); len(got) != 1 || got[0].Action != "new" {
		t.Fatalf("events %+v, want one new notification", got)
	}
}

func TestMarkRead(t *testing.T) {
	f := newFixture(t, 1, 2)
	ctx := context.Background()
	f.raise(t, spec(key, "warning", 30))
	alertID := f.only(t, 1).Alert.ID
	f.raise(t, spec("stale_ESP_A1B2C3_5_ds18b20", "warning", 0))
	unread := false

	steps := []struct {
		name       string
		user       int64
		id         string
		wantMarked int64
		wantUnread map[int64]int
	}{
		{
			name:       "one copy",
			user:       1,
			id:         copyID(alertID, 1),
			wantMarked: 1,
			wantUnread: map[int64]int{1: 1, 2: 2},
		},
		{
			name:       "the same copy again",
			user:       1,
			id:         copyID(alertID, 1),
			wantMarked: 0,
			wantUnread: map[int64]int{1: 1, 2: 2},
		},
		{
			name:       "another user's copy",
			user:       1,
			id:         copyID(alertID, 2),
			wantMarked: 0,
			wantUnread: map[int64]int{1: 1, 2: 2},
		},
		{
			name:       "all of a user",
			user:       2,
			id:         "",
			wantMarked: 2,
			wantUnread: map[int64]int{1: 1, 2: 0},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n, err := f.svc.MarkRead(ctx, st.user, st.id)
			if err != nil || n != st.wantMarked {
				t.Fatalf("marked %d (%v), want %d", n, err, st.wantMarked)
			}
			for u, want := range st.wantUnread {
				_, total, err := f.svc.List(ctx, store.NotificationFilter{UserID: u, IsRead: &unread})
				if err != nil || total != want {
					t.Fatalf("user %d has %d unread (%v), want %d", u, total, err, want)
				}
			}
		})
	}

	n, err := f.svc.Get(ctx, 1, copyID(alertID, 1))
	if err != nil || !n.IsRead || n.ReadAt == nil {
		t.Fatalf("read copy %+v (%v)", n, err)
	}
}

func TestLoadResumesOpenAlerts(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	const resolvedKey = "offline_ESP_D4E5F6"
	f.raise(t, spec(key, "warning", 30))
	f.raise(t, spec(resolvedKey, "warning", 0))
	if err := f.svc.Clear(ctx, resolvedKey); err != nil {
		t.Fatal(err)
	}

	restarted := f.newService()
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !restarted.IsOpen(key) || restarted.IsOpen(resolvedKey) {
		t.Fatalf("after load: %s open %v, %s open %v; want true, false", key, restarted.IsOpen(key), resolvedKey,
			restarted.IsOpen(resolvedKey))
	}

	// A breach after the restart continues the loaded alert.
	if err := restarted.Raise(ctx, spec(key, "warning", 32)); err != nil {
		t.Fatal(err)
	}
	ns, _, err := restarted.List(ctx, store.NotificationFilter{UserID: 1, Status: "active"})
	if err != nil || len(ns) != 1 || ns[0].Occurrences != 2 {
		t.Fatalf("active notifications %+v (%v), want the loaded alert with 2 occurrences", ns, err)
	}
}

func TestUserListFailure(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	failure := errors.New("users unavailable")

	t.Run("a new alert cannot be routed", func(t *testing.T) {
		f.setUsers(nil, failure)
		if err := f.svc.Raise(ctx, spec(key, "warning", 30)); !errors.Is(err, failure) {
			t.Fatalf("raise: %v, want the user-list error", err)
		}
	})
	t.Run("an update is stored without events", func(t *testing.T) {
		f.setUsers([]int64{1}, nil)
		f.raise(t, spec("stale_ESP_A1B2C3_5_ds18b20", "warning", 0))
		f.notices(t)

		f.setUsers(nil, failure)
		if err := f.svc.Clear(ctx, "stale_ESP_A1B2C3_5_ds18b20"); err != nil {
			t.Fatal(err)
		}
		if got := f.notices(t); len(got) != 0 {
			t.Fatalf("events without a user list: %+v", got)
		}
		if a := f.only(t, 1).Alert; a.Status != "resolved" {
			t.Fatalf("status %q after clear, want resolved", a.Status)
		}
	})
}

func TestSendDeliversToTheNamedUsersWithGenericDedup(t *testing.T) {
	f := newFixture(t, 1, 2, 3)
	ctx := context.Background()
	s := Spec{Severity: "info", Category: "system", Source: "logic_engine", Title: "Heater",
		Body: "heater on", Metadata: map[string]any{"rule_id": "r1"}}

	to, err := f.svc.Send(ctx, s, []int64{1, 2})
	if err != nil || len(to) != 2 {
		t.Fatalf("Send = %v, %v", to, err)
	}
	n := f.only(t, 1)
	if n.Alert.Body != "heater on" || n.Alert.Source != "logic_engine" || n.Alert.Status != "active" {
		t.Fatalf("copy %+v", n.Alert)
	}
	if ns, _, _ := f.svc.List(ctx, store.NotificationFilter{UserID: 3}); len(ns) != 0 {
		t.Fatalf("user 3 was not named but got %d", len(ns))
	}
	if got := f.notices(t); len(got) != 2 || got[0].UserID != 1 || got[1].UserID != 2 {
		t.Fatalf("events %+v", got)
	}

	// The same title within 120 s is dropped for users 1 and 2, not for 3.
	f.clock.Advance(119 * time.Second)
	to, err = f.svc.Send(ctx, s, []int64{1, 2, 3})
	if err != nil || len(to) != 1 || to[0] != 3 {
		t.Fatalf("within the window: %v, %v", to, err)
	}
	f.notices(t)
	f.clock.Advance(time.Second)
	if to, _ := f.svc.Send(ctx, s, []int64{1}); len(to) != 1 {
		t.Fatalf("after the window: %v", to)
	}
	f.notices(t)

	// A sent notification has a lifecycle of its own.
	got, err := f.svc.Transition(ctx, 1, n.ID, "acknowledge", "user1")
	if err != nil || got.Alert.Status != "acknowledged" {
		t.Fatalf("acknowledge = %+v, %v", got.Alert, err)
	}
	if ev := f.notices(t); len(ev) != 1 || ev[0].UserID != 1 || ev[0].Status != "acknowledged" {
		t.Fatalf("acknowledge events %+v", ev)
	}
}
