// Package notify is alerts and notifications (docs/domain.md §3.3–3.4): one alert
// per key with deduplication, escalation, automatic and manual resolution;
// per-user notification copies sharing the alert's lifecycle; WebSocket
// `notification` events to the owning users only.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Store is the persistence the service needs.
type Store interface {
	SaveAlert(ctx context.Context, a store.Alert) error
	OpenAlerts(ctx context.Context) ([]store.Alert, error)
	ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error)
	MarkRead(ctx context.Context, userID int64, id string) (int64, error)
}

// ErrNotFound is returned for an unknown notification (or another user's).
var ErrNotFound = errors.New("notification not found")

// Spec describes a condition to alert on.
type Spec struct {
	Key        string
	Severity   string // critical, warning, info
	Category   string
	Source     string
	Title      string
	Body       string
	Metadata   map[string]any
	Suppressed bool
}

var rank = map[string]int{"info": 1, "warning": 2, "critical": 3}

// Service owns the open alerts.
type Service struct {
	store  Store
	events *event.Bus
	users  func(ctx context.Context) ([]int64, error)
	log    *slog.Logger
	now    func() time.Time
	dedup  time.Duration // manual-resolve disarm window (alert_dedup_seconds)
	refire time.Duration // chatter window after an auto-resolve

	mu           sync.Mutex
	open         map[string]*store.Alert
	disarmed     map[string]time.Time // key → manual resolve time
	autoResolved map[string]time.Time
	sent         map[sentKey]time.Time // keyless notifications, for the generic dedup
}

// sentKey is the generic dedup identity of docs/domain.md §3.3.
type sentKey struct {
	user                    int64
	source, category, title string
}

// dedupWindow is the generic dedup window of a source (docs/domain.md §3.3).
func dedupWindow(source string) time.Duration {
	switch source {
	case "mqtt_handler", "device_event", "system":
		return 300 * time.Second
	case "sensor_threshold", "logic_engine":
		return 120 * time.Second
	}
	return 60 * time.Second
}

// New builds the service; users lists the active users that get copies.
func New(st Store, events *event.Bus, users func(ctx context.Context) ([]int64, error), log *slog.Logger) *Service {
	return &Service{
		store:        st,
		events:       events,
		users:        users,
		log:          log,
		now:          time.Now,
		dedup:        1800 * time.Second,
		refire:       30 * time.Minute,
		open:         map[string]*store.Alert{},
		disarmed:     map[string]time.Time{},
		autoResolved: map[string]time.Time{},
		sent:         map[sentKey]time.Time{},
	}
}

// Load reads the open alerts.
func (s *Service) Load(ctx context.Context) error {
	as, err := s.store.OpenAlerts(ctx)
	if err != nil {
		return fmt.Errorf("load alerts: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range as {
		a := as[i]
		s.open[a.Key] = &a
	}
	return nil
}

// withRefire returns a copy of md marked as a re-fire; the caller's map
// is left alone (it may be shared, or nil).
func withRefire(md map[string]any) map[string]any {
	out := make(map[string]any, len(md)+1)
	for k, v := range md {
		out[k] = v
	}
	out["refire"] = true
	return out
}

// Raise reports a breach of spec.Key (docs/domain.md §3.3): a new alert, an update
// of the open one, or nothing while the key is disarmed by a manual resolve.
func (s *Service) Raise(ctx context.Context, spec Spec) error {
	now := s.now()
	s.mu.Lock()
	if t, ok := s.disarmed[spec.Key]; ok {
		if now.Sub(t) < s.dedup {
			s.mu.Unlock()
			return nil
		}
		delete(s.disarmed, spec.Key)
	}
	a := s.open[spec.Key]
	route := false
	if a == nil {
		metadata := spec.Metadata
		if t, ok := s.autoResolved[spec.Key]; ok && now.Sub(t) < s.refire {
			// Chatter protection: email and webhook would be skipped; the
			// WebSocket still fires (no other channels exist yet).
			metadata = withRefire(metadata)
		}
		md, _ := json.Marshal(metadata)
		a = &store.Alert{
			ID:          uuid.NewString(),
			Key:         spec.Key,
			Severity:    spec.Severity,
			Category:    spec.Category,
			Source:      spec.Source,
			Title:       spec.Title,
			Body:        spec.Body,
			Metadata:    md,
			Status:      "active",
			Suppressed:  spec.Suppressed,
			Occurrences: 1,
			CreatedAt:   now,
			UpdatedAt:   now,
		}
		s.open[spec.Key] = a
		route = true
	} else {
		a.Occurrences++
		a.UpdatedAt = now
		md, _ := json.Marshal(spec.Metadata)
		a.Metadata = md
		if rank[spec.Severity] > rank[a.Severity] {
			a.Severity, a.Title, a.Body = spec.Severity, spec.Title, spec.Body
			route = true
		}
	}
	cp := *a
	s.mu.Unlock()
	if route && !cp.Suppressed {
		users, err := s.users(ctx)
		if err != nil {
			return err
		}
		cp.NotifyUsers = users
	}
	if err := s.store.SaveAlert(ctx, cp); err != nil {
		return err
	}
	if route && !cp.Suppressed {
		s.emit(cp, "new")
	}
	return nil
}

// Clear auto-resolves the open alert of key (a usable reading back inside
// all bands) and re-arms a manually resolved key.
func (s *Service) Clear(ctx context.Context, key string) error {
	now := s.now()
	s.mu.Lock()
	delete(s.disarmed, key)
	a := s.open[key]
	if a == nil {
		s.mu.Unlock()
		return nil
	}
	delete(s.open, key)
	s.autoResolved[key] = now
	a.Status, a.ResolvedAt, a.ResolvedBy, a.UpdatedAt = "resolved", &now, "system", now
	cp := *a
	s.mu.Unlock()
	if err := s.store.SaveAlert(ctx, cp); err != nil {
		return err
	}
	s.emit(cp, "updated")
	return nil
}

// IsOpen reports whether key has an active or acknowledged alert.
func (s *Service) IsOpen(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[key] != nil
}

// Send delivers a notification without an alert lifecycle of its own
// (a rule's notification action, docs/domain.md §6.4) to users, dropping the
// copies the generic dedup of docs/domain.md §3.3 holds back: the same (user,
// source, category, title) within the source's window. It returns the
// users who got a copy; their copies are stored before it returns.
func (s *Service) Send(ctx context.Context, spec Spec, users []int64) ([]int64, error) {
	now := s.now()
	window := dedupWindow(spec.Source)
	var to []int64
	s.mu.Lock()
	for k, at := range s.sent {
		if now.Sub(at) >= dedupWindow(k.source) {
			delete(s.sent, k)
		}
	}
	for _, u := range users {
		k := sentKey{user: u, source: spec.Source, category: spec.Category, title: spec.Title}
		if at, ok := s.sent[k]; ok && now.Sub(at) < window {
			continue
		}
		s.sent[k] = now
		to = append(to, u)
	}
	s.mu.Unlock()
	if len(to) == 0 {
		return nil, nil
	}

	md, _ := json.Marshal(spec.Metadata)
	id := uuid.NewString()
	key := spec.Key
	if key == "" {
		key = "notification_" + id
	}
	a := store.Alert{
		ID:          id,
		Key:         key,
		Severity:    spec.Severity,
		Category:    spec.Category,
		Source:      spec.Source,
		Title:       spec.Title,
		Body:        spec.Body,
		Metadata:    md,
		Status:      "active",
		Occurrences: 1,
		CreatedAt:   now,
		UpdatedAt:   now,
		NotifyUsers: to,
	}
	if err := s.store.SaveAlert(ctx, a); err != nil {
		return nil, fmt.Errorf("store notification: %w", err)
	}
	s.emit(a, "new")
	return to, nil
}

// Transition applies a user's acknowledge or resolve to the alert behind a
// notification (all copies share it). Other transitions are no-ops.
func (s *Service) Transition(
	ctx context.Context,
	userID int64,
	notificationID, action, username string,
) (store.Notification, error) {
	n, err := s.Get(ctx, userID, notificationID)
	if err != nil {
		return n, err
	}
	now := s.now()
	s.mu.Lock()
	a := s.open[n.Key]
	if a == nil && n.Alert.Status != "resolved" {
		// A notification sent without a kept lifecycle (Send): its own
		// record is the lifecycle.
		own := n.Alert
		own.NotifyUsers = []int64{userID}
		a = &own
	}
	if a == nil || a.ID != n.Alert.ID {
		s.mu.Unlock()
		return n, nil // resolved is terminal
	}
	switch {
	case action == "acknowledge" && a.Status == "active":
		a.Status, a.AcknowledgedAt, a.AcknowledgedBy = "acknowledged", &now, username
	case action == "resolve":
		a.Status, a.ResolvedAt, a.ResolvedBy = "resolved", &now, username
		delete(s.open, a.Key)
		s.disarmed[a.Key] = now
	default:
		s.mu.Unlock()
		return n, nil
	}
	a.UpdatedAt = now
	cp := *a
	s.mu.Unlock()
	if err := s.store.SaveAlert(ctx, cp); err != nil {
		return n, err
	}
	s.emit(cp, "updated")
	return s.Get(ctx, userID, notificationID)
}

// Get returns one of the user's notifications.
func (s *Service) Get(ctx context.Context, userID int64, id string) (store.Notification, error) {
	ns, _, err := s.store.ListNotifications(ctx, store.NotificationFilter{UserID: userID, ID: id, Limit: 1})
	if err != nil {
		return store.Notification{}, err
	}
	if len(ns) == 0 {
		return store.Notification{}, ErrNotFound
	}
	return ns[0], nil
}

// List passes through to the store.
func (s *Service) List(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error) {
	return s.store.ListNotifications(ctx, f)
}

// MarkRead marks one (or all, id "") of a user's notifications read.
func (s *Service) MarkRead(ctx context.Context, userID int64, id string) (int64, error) {
	return s.store.MarkRead(ctx, userID, id)
}

// emit sends a `notification` event per user copy (owner-only delivery is
// enforced by the live feed through the payload's Recipient).
func (s *Service) emit(a store.Alert, action string) {
	users := a.NotifyUsers
	if users == nil {
		var err error
		users, err = s.users(context.Background())
		if err != nil {
			return
		}
	}
	var md map[string]any
	_ = json.Unmarshal(a.Metadata, &md)
	for _, u := range users {
		s.events.Publish(event.Event{Time: a.UpdatedAt, Data: event.Notification{
			UserID:        u,
			ID:            fmt.Sprintf("%s-%d", a.ID, u),
			Action:        action,
			Severity:      a.Severity,
			Category:      a.Category,
			Title:         a.Title,
			Message:       a.Body,
			Source:        a.Source,
			Status:        a.Status,
			CorrelationID: a.Key,
			Metadata:      md,
			Timestamp:     a.UpdatedAt.Unix(),
		}})
	}
}
