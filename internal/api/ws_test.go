package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/apitest"
	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/live"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
)

type wsFixture struct {
	server *api.Server
	http   *httptest.Server
	feed   *apitest.Feed
	auth   *auth.Service
	admin  auth.Principal
	token  string
}

func newWSFixture(t *testing.T) *wsFixture {
	t.Helper()
	ctx := context.Background()
	discard := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })

	a, err := auth.New(ctx, auth.Config{Secret: bytes.Repeat([]byte("s"), 32), BcryptCost: 4}, st)
	if err != nil {
		t.Fatal(err)
	}
	_, tokens, err := a.Setup(ctx, auth.NewUser{Username: "admin", Email: "admin@example.org", Password: "Admin-pass-1"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.Authenticate(ctx, tokens.AccessToken)
	if err != nil {
		t.Fatal(err)
	}

	feed := &apitest.Feed{}
	s := api.New(api.Deps{
		Auth:        a,
		Live:        feed,
		Logger:      discard,
		CORSOrigins: []string{"http://localhost:5173"},
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &wsFixture{
		server: s,
		http:   srv,
		feed:   feed,
		auth:   a,
		admin:  admin,
		token:  tokens.AccessToken,
	}
}

// handshake sends the handshake request and returns the status and the error code of docs/api.md §1.5 ("" without one).
func (fx *wsFixture) handshake(t *testing.T, clientID, query string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", fx.http.URL+"/api/v1/ws/realtime/"+clientID+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code
}

func TestWSHandshakeChecksBeforeTheFeed(t *testing.T) {
	fx := newWSFixture(t)
	bearer := http.Header{"Authorization": {"Bearer " + fx.token}}
	origin := func(o string) http.Header { return http.Header{"Origin": {o}} }
	tests := []struct {
		name       string
		clientID   string
		query      string
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"token in the query", "dash", "?token=" + fx.token, nil, http.StatusNoContent, ""},
		{"token as bearer", "dash", "", bearer, http.StatusNoContent, ""},
		{"allowed origin", "dash", "?token=" + fx.token, origin("http://localhost:5173"), http.StatusNoContent, ""},
		{"same origin", "dash", "?token=" + fx.token, origin(fx.http.URL), http.StatusNoContent, ""},
		{"foreign origin", "dash", "?token=" + fx.token, origin("http://evil.example"), 403, "ORIGIN_NOT_ALLOWED"},
		{"no token", "dash", "", nil, 401, "NOT_AUTHENTICATED"},
		{"invalid token", "dash", "?token=not-a-jwt", nil, 401, "INVALID_TOKEN"},
		{"client id with a dot", "dash.v2", "?token=" + fx.token, nil, 422, "VALIDATION_ERROR"},
		{"client id too long", strings.Repeat("c", 65), "?token=" + fx.token, nil, 422, "VALIDATION_ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx.feed.Accepted = nil

			status, code := fx.handshake(t, tt.clientID, tt.query, tt.header)

			if status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("status %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
			handed := len(fx.feed.Accepted) > 0
			if handed != (tt.wantStatus == http.StatusNoContent) {
				t.Fatalf("handed to the feed: %v (%+v)", handed, fx.feed.Accepted)
			}
			want := apitest.FeedSession{User: fx.admin.User.ID, ClientID: tt.clientID, TokenID: fx.admin.Claims.ID}
			if handed && fx.feed.Accepted[0] != want {
				t.Fatalf("handed %+v, want %+v", fx.feed.Accepted[0], want)
			}
		})
	}
}

func TestWSHandshakeAnswersTheFeedsRefusals(t *testing.T) {
	fx := newWSFixture(t)
	tests := []struct {
		name       string
		refusal    error
		answered   int
		wantStatus int
		wantCode   string
	}{
		{"stopping", live.ErrStopping, 0, 503, "SERVICE_UNAVAILABLE"},
		{"total limit", live.ErrTooManyConnections, 0, 503, "TOO_MANY_CONNECTIONS"},
		{"user limit", live.ErrUserLimit, 0, 409, "LIMIT_EXCEEDED"},
		{"wrapped refusal", fmt.Errorf("admit: %w", live.ErrUserLimit), 0, 409, "LIMIT_EXCEEDED"},
		{"failed upgrade answered by the feed", errors.New("websocket: bad handshake"), 426, 426, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx.feed.Refusal, fx.feed.Answered = tt.refusal, tt.answered
			status, code := fx.handshake(t, "dash", "?token="+fx.token, nil)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("status %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestWSRevocationShutdownAndStatsReachTheFeed(t *testing.T) {
	fx := newWSFixture(t)

	if _, err := fx.auth.Logout(context.Background(), fx.admin, "", true); err != nil {
		t.Fatal(err)
	}
	// The session's token, then every session of the user (token_version).
	want := []apitest.FeedSession{{User: fx.admin.User.ID, TokenID: fx.admin.Claims.ID}, {User: fx.admin.User.ID}}
	if len(fx.feed.Revoked) != 2 || fx.feed.Revoked[0] != want[0] || fx.feed.Revoked[1] != want[1] {
		t.Fatalf("revoked %+v, want %+v", fx.feed.Revoked, want)
	}

	stats := fx.server.WSStats()
	wantStats := map[string]any{
		"active_connections":      2,
		"total_messages_sent":     int64(30),
		"messages_coalesced":      int64(4),
		"slow_client_disconnects": int64(1),
	}
	for k, v := range wantStats {
		if stats[k] != v {
			t.Errorf("WSStats()[%q] = %#v, want %#v", k, stats[k], v)
		}
	}

	fx.server.Close()
	if !fx.feed.Closed {
		t.Fatal("Close did not close the live feed")
	}
}
