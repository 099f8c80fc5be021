package alertapi

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// fixture is the HTTP core with the notification routes over fakes.
type fixture struct {
	*apitest.Fixture
	alerts *fakeAlerts
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{Fixture: apitest.New(t), alerts: &fakeAlerts{}}
	Register(f.Srv, Deps{Alerts: f.alerts})
	return f
}

// fakeAlerts holds notifications of every user.
type fakeAlerts struct {
	mu    sync.Mutex
	items []store.Notification
	err   error
}

func (f *fakeAlerts) Get(_ context.Context, user int64, id string) (store.Notification, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.items {
		if n.ID == id && n.UserID == user {
			return n, nil
		}
	}
	return store.Notification{}, notify.ErrNotFound
}

func (f *fakeAlerts) List(_ context.Context, flt store.NotificationFilter) ([]store.Notification, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Notification
	for _, n := range f.items {
		if n.UserID == flt.UserID && (flt.IsRead == nil || n.IsRead == *flt.IsRead) {
			out = append(out, n)
		}
	}
	return out, len(out), f.err
}

func (f *fakeAlerts) MarkRead(_ context.Context, user int64, id string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for i := range f.items {
		if f.items[i].UserID == user && (id == "" || f.items[i].ID == id) && !f.items[i].IsRead {
			f.items[i].IsRead = true
			n++
		}
	}
	return n, f.err
}

func (f *fakeAlerts) Transition(ctx context.Context, user int64, id, action, by string) (store.Notification, error) {
	n, err := f.Get(ctx, user, id)
	if err != nil {
		return n, err
	}
	n.Status = map[string]string{"acknowledge": "acknowledged", "resolve": "resolved"}[action]
	n.AcknowledgedBy = by
	return n, nil
}

func note(id string, user int64, severity string, read bool) store.Notification {
	n := store.Notification{
		ID:      id,
		UserID:  user,
		IsRead:  read,
		Channel: "websocket",
	}
	n.Severity, n.Title, n.Key, n.Status = severity, "pH high", "alert:"+id, "active"
	n.Metadata = []byte(`{"esp_id": "ESP_1"}`)
	n.CreatedAt = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	return n
}

func TestNotificationsAreTheCallersOwn(t *testing.T) {
	f := newFixture(t)
	f.alerts.items = []store.Notification{note("n1", 3, "warning", false), note("n2", 3, "critical", false),
		note("n3", 3, "info", true), note("n4", 1, "critical", false)}

	r := f.Do(t, "GET", "/api/v1/notifications?page_size=2", apitest.ViewerToken, nil)
	if r.Status != 200 || len(r.Items("data")) != 3 || r.Obj("pagination")["total_items"] != 3.0 {
		t.Fatalf("list: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/notifications?is_read=false", apitest.ViewerToken, nil); len(r.Items("data")) != 2 {
		t.Fatalf("unread filter: %s", r.Raw)
	}
	r = f.Do(t, "GET", "/api/v1/notifications/unread-count", apitest.ViewerToken, nil)
	if r.Body["unread_count"] != 2.0 || r.Body["highest_severity"] != "critical" {
		t.Fatalf("unread: %s", r.Raw)
	}
	r = f.Do(t, "GET", "/api/v1/notifications/n1", apitest.ViewerToken, nil)
	if r.Body["correlation_id"] != "alert:n1" || r.Obj("metadata")["esp_id"] != "ESP_1" || r.Body["read_at"] != nil {
		t.Fatalf("one: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/notifications/n4", apitest.ViewerToken, nil); r.Status != 404 ||
		r.Code() != "NOTIFICATION_NOT_FOUND" {
		t.Fatalf("another user's: %s", r.Raw)
	}

	if r := f.Do(t, "PATCH", "/api/v1/notifications/n1/read", apitest.ViewerToken, nil); r.Body["is_read"] != true {
		t.Fatalf("read one: %s", r.Raw)
	}
	if r := f.Do(t, "PATCH", "/api/v1/notifications/nx/read", apitest.ViewerToken, nil); r.Status != 404 {
		t.Fatalf("read unknown: %d", r.Status)
	}
	if r := f.Do(t, "PATCH", "/api/v1/notifications/read-all", apitest.ViewerToken, nil); r.Body["updated_count"] != 1.0 {
		t.Fatalf("read all: %s", r.Raw)
	}
	r = f.Do(t, "PATCH", "/api/v1/notifications/n2/acknowledge", apitest.ViewerToken, nil)
	if r.Body["status"] != "acknowledged" || r.Body["acknowledged_by"] != "viewer" {
		t.Fatalf("acknowledge: %s", r.Raw)
	}
	r = f.Do(t, "PATCH", "/api/v1/notifications/n2/resolve", apitest.ViewerToken, nil)
	if r.Body["status"] != "resolved" {
		t.Fatalf("resolve: %s", r.Raw)
	}
	if r := f.Do(t, "GET", "/api/v1/notifications?page=0", apitest.ViewerToken, nil); r.Status != 422 {
		t.Fatalf("bad page: %d", r.Status)
	}
	f.alerts.err = apitest.ErrBoom
	for _, p := range []string{"/api/v1/notifications", "/api/v1/notifications/unread-count"} {
		if r := f.Do(t, "GET", p, apitest.ViewerToken, nil); r.Status != 500 {
			t.Errorf("%s: %d", p, r.Status)
		}
	}
	if r := f.Do(t, "PATCH", "/api/v1/notifications/read-all", apitest.ViewerToken, nil); r.Status != 500 {
		t.Errorf("read-all: %d", r.Status)
	}
}
