package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

func usersAndTokens(t *testing.T, s Subject) {
	c := ctx(t)
	admin := store.User{Username: "Admin", Email: "Admin@Example.org", Role: "admin", IsActive: true,
		PasswordHash: "h", TokenVersion: 1, CreatedAt: base, UpdatedAt: base}
	admin, err := s.Store.CreateFirstUser(c, admin)
	must(t, err)
	if admin.ID == 0 {
		t.Fatal("no id assigned")
	}
	if _, err := s.Store.CreateFirstUser(c, store.User{Username: "x", Email: "x@x", Role: "admin",
		PasswordHash: "h", CreatedAt: base, UpdatedAt: base}); !errors.Is(err, store.ErrSetupDone) {
		t.Fatalf("second first user: %v", err)
	}
	if _, err := s.Store.CreateUser(c, store.User{Username: "admin", Email: "other@example.org", Role: "viewer",
		PasswordHash: "h", CreatedAt: base, UpdatedAt: base}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("username differing only in case: %v, want ErrDuplicate", err)
	}
	op, err := s.Store.CreateUser(c, store.User{Username: "op", Email: "op@example.org", Role: "operator",
		IsActive: true, PasswordHash: "h2", TokenVersion: 1, CreatedAt: base, UpdatedAt: base})
	must(t, err)

	found, err := s.Store.FindUserByLogin(c, "admin@example.ORG")
	must(t, err)
	if !reflect.DeepEqual(found, admin) {
		t.Fatalf("login by e-mail\n got %+v\nwant %+v", found, admin)
	}
	if _, err := s.Store.GetUser(c, 999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
	users, err := s.Store.ListUsers(c)
	must(t, err)
	if n, _ := s.Store.CountUsers(c); len(users) != 2 || n != 2 || users[1].ID != op.ID {
		t.Fatalf("users %+v", users)
	}

	demoted := admin
	demoted.Role = "viewer"
	if err := s.Store.UpdateUser(c, demoted); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("demoting the last admin: %v", err)
	}
	if err := s.Store.DeleteUser(c, admin.ID); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("deleting the last admin: %v", err)
	}
	if got, _ := s.Store.GetUser(c, admin.ID); got.Role != "admin" {
		t.Fatal("a refused change was kept")
	}
	op.Role, op.TokenVersion, op.UpdatedAt = "admin", 2, base.Add(time.Minute)
	must(t, s.Store.UpdateUser(c, op))
	must(t, s.Store.DeleteUser(c, admin.ID))
	if got, err := s.Store.GetUser(c, op.ID); err != nil || !reflect.DeepEqual(got, op) {
		t.Fatalf("updated user %+v %v", got, err)
	}

	must(t, s.Store.BlacklistToken(c, "jti-old", base))
	must(t, s.Store.BlacklistToken(c, "jti-new", base.Add(time.Hour)))
	bl, err := s.Store.LoadBlacklist(c, base.Add(time.Minute))
	must(t, err)
	if len(bl) != 1 || !bl["jti-new"].Equal(base.Add(time.Hour)) {
		t.Fatalf("blacklist %v", bl)
	}
	if n, err := s.Store.PurgeBlacklist(c, base.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("purged %d %v", n, err)
	}
}

func auditAndSettings(t *testing.T, s Subject) {
	c := ctx(t)
	entry := func(id, typ, sev string, at time.Time) store.AuditEntry {
		return store.AuditEntry{ID: id, EventType: typ, Severity: sev, SourceType: "user", SourceID: "admin",
			Status: "success", Message: "m " + id, Details: map[string]any{"k": id}, CreatedAt: at}
	}
	must(t, s.Store.AppendAudit(c, entry("a1", "login", "info", base)))
	must(t, s.Store.AppendAudit(c, entry("a2", "emergency_stop", "info", base.Add(time.Second))))
	must(t, s.Store.AppendAudit(c, entry("a3", "login", "warning", base.Add(2*time.Second))))
	must(t, s.Store.AppendAudit(c, entry("a4", "login", "info", base.Add(2*time.Second))))
	flush(t, s.Store)

	all, total, err := s.Store.QueryAudit(c, store.AuditFilter{})
	must(t, err)
	if total != 4 || len(all) != 4 || all[0].ID != "a4" || all[1].ID != "a3" || all[3].ID != "a1" {
		t.Fatalf("audit newest first (ties in insertion order, newest first): %v", ids(all))
	}
	if !reflect.DeepEqual(all[3], entry("a1", "login", "info", base)) {
		t.Fatalf("entry read back as %+v", all[3])
	}
	page, total, err := s.Store.QueryAudit(c, store.AuditFilter{EventTypes: []string{"login"},
		Severities: []string{"info"}, Limit: 1, Offset: 1})
	must(t, err)
	if total != 2 || len(page) != 1 || page[0].ID != "a1" {
		t.Fatalf("filtered page total %d %v", total, ids(page))
	}
	bySev, byType, oldest, newest, err := s.Store.AuditCounts(c, base.Add(time.Second))
	must(t, err)
	if bySev["info"] != 2 || bySev["warning"] != 1 || byType["login"] != 2 || !oldest.Equal(base.Add(time.Second)) ||
		!newest.Equal(base.Add(2*time.Second)) {
		t.Fatalf("counts %v %v %v %v", bySev, byType, oldest, newest)
	}
	n, err := s.Store.DeleteAudit(c, "info", base.Add(time.Hour), []string{"emergency_stop"}, 10)
	must(t, err)
	if n != 2 {
		t.Fatalf("deleted %d, want the 2 info logins", n)
	}
	left, _, _ := s.Store.QueryAudit(c, store.AuditFilter{})
	if len(left) != 2 || left[0].ID != "a3" || left[1].ID != "a2" {
		t.Fatalf("left %v", ids(left))
	}

	if _, ok, err := s.Store.GetSetting(c, "tz"); ok || err != nil {
		t.Fatalf("unset setting: %v %v", ok, err)
	}
	must(t, s.Store.PutSetting(c, "tz", "UTC"))
	must(t, s.Store.PutSetting(c, "tz", "Europe/Berlin"))
	if v, ok, err := s.Store.GetSetting(c, "tz"); v != "Europe/Berlin" || !ok || err != nil {
		t.Fatalf("setting %q %v %v", v, ok, err)
	}
}

func ids(es []store.AuditEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func alertsAndNotifications(t *testing.T, s Subject) {
	c := ctx(t)
	a := store.Alert{ID: "al-1", Key: "sensor:ESP_1:34", Severity: "warning", Category: "sensor",
		Source: "ESP_1", Title: "pH high", Body: "7.9", Metadata: []byte(`{"v":7.9}`), Status: "active",
		Occurrences: 1, CreatedAt: base, UpdatedAt: base, NotifyUsers: []int64{1, 2}}
	must(t, s.Store.SaveAlert(c, a))
	a.Status, a.Occurrences, a.UpdatedAt = "acknowledged", 2, base.Add(time.Minute)
	a.AcknowledgedAt, a.AcknowledgedBy = ptr(base.Add(time.Minute)), "op"
	must(t, s.Store.SaveAlert(c, a)) // the copies exist already
	resolved := store.Alert{ID: "al-2", Key: "k2", Severity: "info", Category: "system", Source: "hub",
		Title: "t", Body: "b", Metadata: []byte(`{}`), Status: "resolved", Occurrences: 1, CreatedAt: base,
		UpdatedAt: base, ResolvedAt: ptr(base), ResolvedBy: "auto", NotifyUsers: []int64{1}}
	must(t, s.Store.SaveAlert(c, resolved))

	open, err := s.Store.OpenAlerts(c)
	must(t, err)
	a.NotifyUsers = nil
	if len(open) != 1 || !reflect.DeepEqual(open[0], a) {
		t.Fatalf("open alerts %+v", open)
	}
	list, total, err := s.Store.ListNotifications(c, store.NotificationFilter{UserID: 1})
	must(t, err)
	if total != 2 || len(list) != 2 {
		t.Fatalf("user 1 has %d notifications (total %d), want 2", len(list), total)
	}
	unread := false
	if n, err := s.Store.MarkRead(c, 1, "al-1-1"); err != nil || n != 1 {
		t.Fatalf("marked %d %v", n, err)
	}
	list, total, err = s.Store.ListNotifications(c, store.NotificationFilter{UserID: 1, IsRead: &unread})
	must(t, err)
	if total != 1 || list[0].Alert.ID != "al-2" || list[0].IsRead {
		t.Fatalf("unread %+v", list)
	}
	if n, _ := s.Store.MarkRead(c, 2, ""); n != 1 {
		t.Fatalf("mark all of user 2: %d", n)
	}
	// Retention: the resolved alert ages out, the open one stays.
	n, err := s.Store.DeleteHistoryBefore(c, "alerts", base.Add(time.Hour), 10)
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d alerts, want the resolved one", n)
	}
	if _, err := s.Store.DeleteHistoryBefore(c, "users", base, 10); err == nil {
		t.Fatal("a table that is not a history was trimmed")
	}
}
