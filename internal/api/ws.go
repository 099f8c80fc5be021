package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/live"
)

// WSConfig tunes the live feed (docs/api.md §17.4); the hub's configuration names
// it here, next to the route it serves.
type WSConfig = live.Config

// LiveFeed is the WebSocket live feed as the HTTP layer uses it: the
// handshake hands it authenticated requests, token revocation closes
// sessions, shutdown closes them all. Accept's refusals are live.ErrStopping,
// live.ErrTooManyConnections and live.ErrUserLimit, with nothing written.
type LiveFeed interface {
	Accept(w http.ResponseWriter, r *http.Request, userID int64, clientID, tokenID string) error
	Revoke(userID int64, tokenID string)
	Stats() live.Stats
	Close()
}

var _ LiveFeed = (*live.Feed)(nil)

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (s *Server) wsRoutes() {
	s.handle(Route{
		Method:  "GET",
		Path:    "/api/v1/ws/realtime/{client_id}",
		MinRole: auth.RoleViewer,
		Tag:     "websocket",
		Summary: "Live event feed (WebSocket, token in ?token=)",
		// The feed hijacks the connection and lives for hours.
		LongLived: true,
	}, s.wsHandshake)
}

// wsHandshake checks origin, token, user and client id before the live feed
// checks its limits and upgrades (docs/api.md §17.1).
func (s *Server) wsHandshake(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(o) && !sameOrigin(r, o) {
		WriteError(w, r, http.StatusForbidden, "ORIGIN_NOT_ALLOWED", "origin not allowed", nil)
		return
	}

	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = bearer(r)
	}
	p, ok := s.authenticate(w, r, tok)
	if !ok {
		return
	}

	clientID := r.PathValue("client_id")
	if !clientIDPattern.MatchString(clientID) {
		PathError(w, r, "client_id", "must be 1-64 characters of [A-Za-z0-9_-]")
		return
	}

	err := s.ws.Accept(w, r, p.User.ID, clientID, p.Claims.ID)
	switch {
	case errors.Is(err, live.ErrStopping):
		WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "hub is stopping", nil)
	case errors.Is(err, live.ErrTooManyConnections):
		WriteError(w, r, http.StatusServiceUnavailable, "TOO_MANY_CONNECTIONS", "WebSocket connection limit reached", nil)
	case errors.Is(err, live.ErrUserLimit):
		WriteError(w, r, http.StatusConflict, "LIMIT_EXCEEDED", "too many WebSocket connections for this user", nil)
	}
	// Any other error is a failed upgrade, which has answered the request itself.
}

func sameOrigin(r *http.Request, origin string) bool {
	return strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://") == r.Host
}
