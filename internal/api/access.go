package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/audit"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/store"
)

// This file is who is asking: the auth step of every guarded route, rate
// limits, the client's address and the audit entry of a user's action.

// auditRecorder is where the guard and the rate limits record what they refuse.
type auditRecorder interface {
	Record(ctx context.Context, e store.AuditEntry)
}

var _ auditRecorder = (*audit.Log)(nil)

// authenticator checks the access tokens of the guarded routes and tells
// when one is revoked.
type authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
	OnRevoke(f func(userID int64, jti string))
}

var _ authenticator = (*auth.Service)(nil)

// guard enforces docs/api.md §2.3: authentication (401), then the role (403).
func (s *Server) guard(minRole string, h Authed) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r, bearer(r))
		if !ok {
			return
		}
		if auth.RoleRank(p.User.Role) < auth.RoleRank(minRole) {
			msg := "Operator or admin privileges required"
			if minRole == auth.RoleAdmin {
				msg = "Admin privileges required"
			}
			s.audit.Record(r.Context(), store.AuditEntry{
				EventType:     "permission_denied",
				Severity:      "warning",
				SourceType:    "api",
				SourceID:      p.User.Username,
				Status:        "failed",
				Message:       msg,
				Details:       map[string]any{"route": r.Method + " " + r.URL.Path},
				IPAddress:     ClientIP(r),
				CorrelationID: RequestID(r),
			})
			WriteError(w, r, http.StatusForbidden, "FORBIDDEN", msg, nil)
			return
		}
		h(w, r, p)
	}
}

// authenticate validates an access token (docs/api.md §2.3), answering 401/403 itself.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, tok string) (auth.Principal, bool) {
	if tok == "" {
		WriteError(w, r, http.StatusUnauthorized, "NOT_AUTHENTICATED", "Not authenticated", nil)
		return auth.Principal{}, false
	}
	p, err := s.auth.Authenticate(r.Context(), tok)
	if err != nil {
		s.TokenError(w, r, err)
		return p, false
	}
	return p, true
}

// TokenError answers a failed token check of auth as the guard does: 401, or
// 403 for a disabled user, or 500.
func (s *Server) TokenError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		WriteError(w, r, http.StatusUnauthorized, "TOKEN_EXPIRED", "Token has expired", nil)
	case errors.Is(err, auth.ErrTokenRevoked):
		WriteError(w, r, http.StatusUnauthorized, "TOKEN_REVOKED", "Token has been revoked", nil)
	case errors.Is(err, auth.ErrInvalidToken):
		WriteError(w, r, http.StatusUnauthorized, "INVALID_TOKEN", "Invalid token", nil)
	case errors.Is(err, auth.ErrUserDisabled):
		WriteError(w, r, http.StatusForbidden, "USER_DISABLED", "User account is disabled", nil)
	default:
		s.Internal(w, r, err)
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ClientIP is the direct peer's address (X-Forwarded-For is not trusted
// unless a trusted proxy is configured, which this build does not offer).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// RateLimit is a limit of perMinute requests per client IP (a sliding window)
// shared by the handlers it wraps; over it the reply is 429 with Retry-After,
// audited under name at most once per IP and window.
func (s *Server) RateLimit(name string, perMinute int) func(http.HandlerFunc) http.HandlerFunc {
	l := auth.NewLimiter(perMinute, time.Minute)
	var mu sync.Mutex
	audited := map[string]time.Time{}
	firstInWindow := func(ip string) bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(audited[ip]) <= time.Minute {
			return false
		}
		audited[ip] = time.Now()
		return true
	}

	return func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ip := ClientIP(r)
			ok, remaining, retry := l.Allow(ip)
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
			if ok {
				h(w, r)
				return
			}

			secs := int(retry/time.Second) + 1
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(retry).Unix(), 10))
			if firstInWindow(ip) {
				s.audit.Record(r.Context(), store.AuditEntry{
					EventType:     "rate_limit_exceeded",
					Severity:      "warning",
					SourceType:    "api",
					SourceID:      ip,
					Status:        "failed",
					Message:       "rate limit exceeded on " + name,
					Details:       map[string]any{"route": r.URL.Path},
					IPAddress:     ip,
					CorrelationID: RequestID(r),
				})
			}
			WriteError(w, r, http.StatusTooManyRequests, "RATE_LIMITED",
				"too many requests; retry after "+strconv.Itoa(secs)+" s", nil)
		}
	}
}

// ValidToken reports whether r carries a valid access token, for open routes
// that trust a logged-in caller more (the processing call).
func (s *Server) ValidToken(r *http.Request) bool {
	tok := bearer(r)
	if tok == "" {
		return false
	}
	_, err := s.auth.Authenticate(r.Context(), tok)
	return err == nil
}

// UserEntry is the audit entry of what actor did through r, from the
// request's client and correlated by its request id.
func UserEntry(r *http.Request, actor, event, msg string, details map[string]any) store.AuditEntry {
	return store.AuditEntry{
		EventType:     event,
		SourceType:    "user",
		SourceID:      actor,
		Message:       msg,
		Details:       details,
		IPAddress:     ClientIP(r),
		CorrelationID: RequestID(r),
	}
}
