package api

import (
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func note(id string, user int64, severity string, read bool) store.Notification {
	n := store.Notification{ID: id, UserID: user, IsRead: read, Channel: "websocket"}
	n.Severity, n.Title, n.Key, n.Status = severity, "pH high", "alert:"+id, "active"
	n.Metadata = []byte(`{"esp_id": "ESP_1"}`)
	n.CreatedAt = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	return n
}

func TestNotificationsAreTheCallersOwn(t *testing.T) {
	f := newFixture(t)
	f.alerts.items = []store.Notification{note("n1", 3, "warning", false), note("n2", 3, "critical", false),
		note("n3", 3, "info", true), note("n4", 1, "critical", false)}

	r := f.do(t, "GET", "/api/v1/notifications?page_size=2", viewerToken, nil)
	if r.status != 200 || len(r.items("data")) != 3 || r.obj("pagination")["total_items"] != 3.0 {
		t.Fatalf("list: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/notifications?is_read=false", viewerToken, nil); len(r.items("data")) != 2 {
		t.Fatalf("unread filter: %s", r.raw)
	}
	r = f.do(t, "GET", "/api/v1/notifications/unread-count", viewerToken, nil)
	if r.body["unread_count"] != 2.0 || r.body["highest_severity"] != "critical" {
		t.Fatalf("unread: %s", r.raw)
	}
	r = f.do(t, "GET", "/api/v1/notifications/n1", viewerToken, nil)
	if r.body["correlation_id"] != "alert:n1" || r.obj("metadata")["esp_id"] != "ESP_1" || r.body["read_at"] != nil {
		t.Fatalf("one: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/notifications/n4", viewerToken, nil); r.status != 404 || r.code() != "NOTIFICATION_NOT_FOUND" {
		t.Fatalf("another user's: %s", r.raw)
	}

	if r := f.do(t, "PATCH", "/api/v1/notifications/n1/read", viewerToken, nil); r.body["is_read"] != true {
		t.Fatalf("read one: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/notifications/nx/read", viewerToken, nil); r.status != 404 {
		t.Fatalf("read unknown: %d", r.status)
	}
	if r := f.do(t, "PATCH", "/api/v1/notifications/read-all", viewerToken, nil); r.body["updated_count"] != 1.0 {
		t.Fatalf("read all: %s", r.raw)
	}
	r = f.do(t, "PATCH", "/api/v1/notifications/n2/acknowledge", viewerToken, nil)
	if r.body["status"] != "acknowledged" || r.body["acknowledged_by"] != "viewer" {
		t.Fatalf("acknowledge: %s", r.raw)
	}
	if r := f.do(t, "PATCH", "/api/v1/notifications/n2/resolve", viewerToken, nil); r.body["status"] != "resolved" {
		t.Fatalf("resolve: %s", r.raw)
	}
	if r := f.do(t, "GET", "/api/v1/notifications?page=0", viewerToken, nil); r.status != 422 {
		t.Fatalf("bad page: %d", r.status)
	}
	f.alerts.err = errBoom
	for _, p := range []string{"/api/v1/notifications", "/api/v1/notifications/unread-count"} {
		if r := f.do(t, "GET", p, viewerToken, nil); r.status != 500 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	if r := f.do(t, "PATCH", "/api/v1/notifications/read-all", viewerToken, nil); r.status != 500 {
		t.Errorf("read-all: %d", r.status)
	}
}
