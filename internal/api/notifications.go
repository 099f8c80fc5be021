package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

func notificationJSON(n store.Notification) map[string]any {
	var md map[string]any
	_ = json.Unmarshal(n.Metadata, &md)
	return map[string]any{"id": n.ID, "user_id": n.UserID, "channel": n.Channel, "severity": n.Severity, "category": n.Category,
		"title": n.Title, "body": n.Body, "metadata": md, "source": n.Source, "is_read": n.IsRead, "read_at": ts(n.ReadAt),
		"status": n.Status, "acknowledged_at": ts(n.AcknowledgedAt), "acknowledged_by": nullStr(n.AcknowledgedBy),
		"resolved_at": ts(n.ResolvedAt), "correlation_id": n.Key, "occurrence_count": n.Occurrences, "suppressed": n.Suppressed,
		"created_at": tsv(n.CreatedAt), "updated_at": tsv(n.UpdatedAt)}
}

func (s *Server) notificationRoutes() {
	s.protected("GET", "/api/v1/notifications", auth.RoleViewer, "The caller's notifications (alerts)", "notifications", s.listNotifications)
	s.protected("GET", "/api/v1/notifications/unread-count", auth.RoleViewer, "Unread notifications", "notifications", s.unreadCount)
	s.protected("GET", "/api/v1/notifications/{id}", auth.RoleViewer, "One notification", "notifications", func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		n, err := s.alerts.Get(r.Context(), p.User.ID, r.PathValue("id"))
		if s.notificationError(w, r, err) {
			return
		}
		WriteJSON(w, http.StatusOK, notificationJSON(n))
	})
	s.protected("PATCH", "/api/v1/notifications/read-all", auth.RoleViewer, "Mark all read", "notifications", func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		n, err := s.alerts.MarkRead(r.Context(), p.User.ID, "")
		if err != nil {
			s.internal(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"success": true, "message": "marked read", "updated_count": n})
	})
	s.protected("PATCH", "/api/v1/notifications/{id}/read", auth.RoleViewer, "Mark one read", "notifications", func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		id := r.PathValue("id")
		if _, err := s.alerts.Get(r.Context(), p.User.ID, id); s.notificationError(w, r, err) {
			return
		}
		if _, err := s.alerts.MarkRead(r.Context(), p.User.ID, id); err != nil {
			s.internal(w, r, err)
			return
		}
		n, err := s.alerts.Get(r.Context(), p.User.ID, id)
		if s.notificationError(w, r, err) {
			return
		}
		WriteJSON(w, http.StatusOK, notificationJSON(n))
	})
	for _, action := range []string{"acknowledge", "resolve"} {
		action := action
		s.protected("PATCH", "/api/v1/notifications/{id}/"+action, auth.RoleViewer, "Set the alert "+action+"d (shared by every copy)", "notifications",
			func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
				n, err := s.alerts.Transition(r.Context(), p.User.ID, r.PathValue("id"), action, p.User.Username)
				if s.notificationError(w, r, err) {
					return
				}
				WriteJSON(w, http.StatusOK, notificationJSON(n))
			})
	}
}

func (s *Server) notificationError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, notify.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "NOTIFICATION_NOT_FOUND", "notification not found", nil)
	default:
		s.internal(w, r, err)
	}
	return true
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := &query{r: r}
	f := store.NotificationFilter{UserID: p.User.ID, Severity: q.str("severity", 20), Category: q.str("category", 40),
		Source: q.str("source", 40), Status: q.str("status", 20)}
	if r.URL.Query().Get("is_read") != "" {
		v := q.boolean("is_read", false)
		f.IsRead = &v
	}
	page := q.integer("page", 1, 1, 1<<30)
	size := q.integer("page_size", 50, 1, 100)
	if q.done(w, r) {
		return
	}
	f.Offset, f.Limit = (page-1)*size, size
	ns, total, err := s.alerts.List(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := []map[string]any{}
	for _, n := range ns {
		out = append(out, notificationJSON(n))
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "data": out, "pagination": pagination(page, size, total)})
}

func (s *Server) unreadCount(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	f := false
	ns, total, err := s.alerts.List(r.Context(), store.NotificationFilter{UserID: p.User.ID, IsRead: &f, Limit: 1000})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var highest any
	best := 0
	for _, n := range ns {
		if rk := map[string]int{"info": 1, "warning": 2, "critical": 3}[n.Severity]; rk > best {
			best, highest = rk, n.Severity
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "unread_count": total, "highest_severity": highest})
}
