// Package alertapi serves a user's notifications of docs/api.md §12 under
// /api/v1/notifications: each user's copies of the alerts of internal/notify,
// read flags, the unread count, and acknowledge and resolve, which every
// copy of an alert shares.
package alertapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/store"
)

// alerts is what the notification routes need from notify.
type alerts interface {
	Get(ctx context.Context, userID int64, id string) (store.Notification, error)
	List(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error)
	MarkRead(ctx context.Context, userID int64, id string) (int64, error)
	Transition(ctx context.Context, userID int64, notificationID, action, username string) (store.Notification, error)
}

var _ alerts = (*notify.Service)(nil)

// Deps are what the notification routes need from the hub.
type Deps struct {
	Alerts alerts
}

type handlers struct {
	srv    *api.Server
	alerts alerts
}

// notificationResponse is a user's copy of an alert (docs/api.md §12).
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
		ReadAt:          api.NullTimestamp(n.ReadAt),
		Status:          n.Status,
		AcknowledgedAt:  api.NullTimestamp(n.AcknowledgedAt),
		AcknowledgedBy:  api.NullString(n.AcknowledgedBy),
		ResolvedAt:      api.NullTimestamp(n.ResolvedAt),
		CorrelationID:   n.Key,
		OccurrenceCount: n.Occurrences,
		Suppressed:      n.Suppressed,
		CreatedAt:       api.Timestamp(n.CreatedAt),
		UpdatedAt:       api.Timestamp(n.UpdatedAt),
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

// Register adds the notification routes to s.
func Register(s *api.Server, d Deps) {
	const (
		base   = "/api/v1/notifications"
		one    = base + "/{id}"
		viewer = auth.RoleViewer
	)
	h := &handlers{srv: s, alerts: d.Alerts}

	g := s.Group("notifications")
	g.Add("GET", base, viewer, "The caller's notifications (alerts)", h.listNotifications,
		api.Returns(api.PageOf[notificationResponse]{}))
	g.Add("GET", base+"/unread-count", viewer, "Unread notifications", h.unreadCount, api.Returns(unreadCount{}))
	g.Add("GET", one, viewer, "One notification", h.getNotification, api.Returns(notificationResponse{}))
	g.Add("PATCH", base+"/read-all", viewer, "Mark all read", h.markAllRead, api.Returns(markedRead{}))
	g.Add("PATCH", one+"/read", viewer, "Mark one read", h.markRead, api.Returns(notificationResponse{}))
	for _, action := range []string{"acknowledge", "resolve"} {
		g.Add("PATCH", one+"/"+action, viewer, "Set the alert "+action+"d (shared by every copy)",
			h.transitionNotification(action), api.Returns(notificationResponse{}))
	}
}

// notificationError maps notification errors; it reports whether it answered.
func (h *handlers) notificationError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, notify.ErrNotFound):
		api.WriteError(w, r, http.StatusNotFound, "NOTIFICATION_NOT_FOUND", "notification not found", nil)
	default:
		h.srv.Internal(w, r, err)
	}
	return true
}

func (h *handlers) getNotification(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	n, err := h.alerts.Get(r.Context(), p.User.ID, r.PathValue("id"))
	if !h.notificationError(w, r, err) {
		api.WriteJSON(w, http.StatusOK, notificationJSON(n))
	}
}

func (h *handlers) markAllRead(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	n, err := h.alerts.MarkRead(r.Context(), p.User.ID, "")
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, markedRead{Success: true, Message: "marked read", UpdatedCount: n})
}

func (h *handlers) markRead(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	if _, err := h.alerts.Get(r.Context(), p.User.ID, id); h.notificationError(w, r, err) {
		return
	}
	if _, err := h.alerts.MarkRead(r.Context(), p.User.ID, id); err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	h.getNotification(w, r, p)
}

func (h *handlers) transitionNotification(action string) api.Authed {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		n, err := h.alerts.Transition(r.Context(), p.User.ID, r.PathValue("id"), action, p.User.Username)
		if !h.notificationError(w, r, err) {
			api.WriteJSON(w, http.StatusOK, notificationJSON(n))
		}
	}
}

func (h *handlers) listNotifications(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := api.NewQuery(r)
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
	ns, total, err := h.alerts.List(r.Context(), f)
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	out := make([]notificationResponse, 0, len(ns))
	for _, n := range ns {
		out = append(out, notificationJSON(n))
	}
	api.WriteJSON(w, http.StatusOK, api.NewPage(out, page, size, total))
}

// severityRank orders notification severities; unknown ones rank lowest.
var severityRank = map[string]int{"info": 1, "warning": 2, "critical": 3}

func (h *handlers) unreadCount(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	unread := false
	ns, total, err := h.alerts.List(r.Context(), store.NotificationFilter{UserID: p.User.ID, IsRead: &unread, Limit: 1000})
	if err != nil {
		h.srv.Internal(w, r, err)
		return
	}
	out := unreadCount{Success: true, UnreadCount: total}
	best := 0
	for _, n := range ns {
		if rk := severityRank[n.Severity]; rk > best {
			best, out.HighestSeverity = rk, &n.Severity
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
}
