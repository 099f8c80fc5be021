package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// alertService is what the HTTP layer needs from notifications.
type alertService interface {
	Get(ctx context.Context, userID int64, id string) (store.Notification, error)
	List(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error)
	MarkRead(ctx context.Context, userID int64, id string) (int64, error)
	Transition(ctx context.Context, userID int64, notificationID, action, username string) (store.Notification, error)
}

var _ alertService = (*notify.Service)(nil)

// notificationResponse is a user's copy of an alert (API §13).
type notificationResponse struct {
	ID              string         `json:"id"`
	UserID          int64          `json:"user_id"`
	Channel         string         `json:"channel"`
	Severity        string         `json:"severity"`
	Category        string         `json:"category"`
	Title           string         `json:"title"`
	Body            string         `json:"body"`
	Metadata        map[string]any `json:"metadata"`
	Source          string         `json:"source"`
	IsRead          bool           `json:"is_read"`
	ReadAt          *string        `json:"read_at"`
	Status          string         `json:"status"`
	AcknowledgedAt  *string        `json:"acknowledged_at"`
	AcknowledgedBy  *string        `json:"acknowledged_by"`
	ResolvedAt      *string        `json:"resolved_at"`
	CorrelationID   string         `json:"correlation_id"`
	OccurrenceCount int64          `json:"occurrence_count"`
	Suppressed      bool           `json:"suppressed"`
	CreatedAt       *string        `json:"created_at"`
	UpdatedAt       *string        `json:"updated_at"`
}

func notificationJSON(n store.Notification) notificationResponse {
	var md map[string]any
	_ = json.Unmarshal(n.Metadata, &md)
	return notificationResponse{
		ID:              n.ID,
		UserID:          n.UserID,
		Channel:         n.Channel,
		Severity:        n.Severity,
		Category:        n.Category,
		Title:           n.Title,
		Body:            n.Body,
		Metadata:        md,
		Source:          n.Source,
		IsRead:          n.IsRead,
		ReadAt:          NullTimestamp(n.ReadAt),
		Status:          n.Status,
		AcknowledgedAt:  NullTimestamp(n.AcknowledgedAt),
		AcknowledgedBy:  NullString(n.AcknowledgedBy),
		ResolvedAt:      NullTimestamp(n.ResolvedAt),
		CorrelationID:   n.Key,
		OccurrenceCount: n.Occurrences,
		Suppressed:      n.Suppressed,
		CreatedAt:       Timestamp(n.CreatedAt),
		UpdatedAt:       Timestamp(n.UpdatedAt),
	}
}

type markedRead struct {
	Success      bool   `json:"success"`
	Message      string `json:"message"`
	UpdatedCount int64  `json:"updated_count"`
}

type unreadCount struct {
	Success         bool    `json:"success"`
	UnreadCount     int     `json:"unread_count"`
	HighestSeverity *string `json:"highest_severity"`
}

func (s *Server) notificationRoutes() {
	const (
		base   = "/api/v1/notifications"
		one    = base + "/{id}"
		viewer = auth.RoleViewer
	)
	s.protected("GET", base, viewer, "The caller's notifications (alerts)", "notifications", s.listNotifications,
		returns(PageOf[notificationResponse]{}))
	s.protected("GET", base+"/unread-count", viewer, "Unread notifications", "notifications", s.unreadCount,
		returns(unreadCount{}))
	s.protected("GET", one, viewer, "One notification", "notifications", s.getNotification,
		returns(notificationResponse{}))
	s.protected("PATCH", base+"/read-all", viewer, "Mark all read", "notifications", s.markAllRead,
		returns(markedRead{}))
	s.protected("PATCH", one+"/read", viewer, "Mark one read", "notifications", s.markRead,
		returns(notificationResponse{}))
	for _, action := range []string{"acknowledge", "resolve"} {
		s.protected("PATCH", one+"/"+action, viewer, "Set the alert "+action+"d (shared by every copy)",
			"notifications", s.transitionNotification(action), returns(notificationResponse{}))
	}
}

// notificationError maps notification errors; it reports whether it answered.
func (s *Server) notificationError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, notify.ErrNotFound):
		WriteError(w, r, http.StatusNotFound, "NOTIFICATION_NOT_FOUND", "notification not found", nil)
	default:
		s.Internal(w, r, err)
	}
	return true
}

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	n, err := s.alerts.Get(r.Context(), p.User.ID, r.PathValue("id"))
	if !s.notificationError(w, r, err) {
		WriteJSON(w, http.StatusOK, notificationJSON(n))
	}
}

func (s *Server) markAllRead(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	n, err := s.alerts.MarkRead(r.Context(), p.User.ID, "")
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, markedRead{Success: true, Message: "marked read", UpdatedCount: n})
}

func (s *Server) markRead(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	if _, err := s.alerts.Get(r.Context(), p.User.ID, id); s.notificationError(w, r, err) {
		return
	}
	if _, err := s.alerts.MarkRead(r.Context(), p.User.ID, id); err != nil {
		s.Internal(w, r, err)
		return
	}
	s.getNotification(w, r, p)
}

func (s *Server) transitionNotification(action string) Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		n, err := s.alerts.Transition(r.Context(), p.User.ID, r.PathValue("id"), action, p.User.Username)
		if !s.notificationError(w, r, err) {
			WriteJSON(w, http.StatusOK, notificationJSON(n))
		}
	}
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := NewQuery(r)
	f := store.NotificationFilter{
		UserID:   p.User.ID,
		Severity: q.Str("severity", 20),
		Category: q.Str("category", 40),
		Source:   q.Str("source", 40),
		Status:   q.Str("status", 20),
	}
	if q.Set("is_read") {
		v := q.Bool("is_read", false)
		f.IsRead = &v
	}
	page := q.Int("page", 1, 1, 1<<30)
	size := q.Int("page_size", 50, 1, 100)
	if q.Done(w, r) {
		return
	}

	f.Offset, f.Limit = (page-1)*size, size
	ns, total, err := s.alerts.List(r.Context(), f)
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	out := make([]notificationResponse, 0, len(ns))
	for _, n := range ns {
		out = append(out, notificationJSON(n))
	}
	WriteJSON(w, http.StatusOK, NewPage(out, page, size, total))
}

// severityRank orders notification severities; unknown ones rank lowest.
var severityRank = map[string]int{"info": 1, "warning": 2, "critical": 3}

func (s *Server) unreadCount(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	unread := false
	ns, total, err := s.alerts.List(r.Context(), store.NotificationFilter{UserID: p.User.ID, IsRead: &unread, Limit: 1000})
	if err != nil {
		s.Internal(w, r, err)
		return
	}
	out := unreadCount{Success: true, UnreadCount: total}
	best := 0
	for _, n := range ns {
		if rk := severityRank[n.Severity]; rk > best {
			best, out.HighestSeverity = rk, &n.Severity
		}
	}
	WriteJSON(w, http.StatusOK, out)
}
