package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
)

// Every route but a long-lived one has the request deadline: a handler
// still busy after it leaves the client a 503 in the error shape, on time;
// one that answers in time is passed through whole. A long-lived route
// (WebSocket, stream) has no deadline.
func TestRequestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := api.New(api.Deps{Logger: slog.New(slog.DiscardHandler), RequestTimeout: 30 * time.Second})
		release := make(chan struct{})
		g := s.Group("test")
		g.Public("GET", "/api/v1/test/stuck", "stuck", func(w http.ResponseWriter, _ *http.Request) {
			<-release // ignores its context, as a handler stuck on a lock would
			api.WriteJSON(w, http.StatusOK, map[string]bool{"late": true})
		})
		g.Public("GET", "/api/v1/test/quick", "quick", func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Context().Deadline(); !ok {
				t.Error("an ordinary route has no deadline")
			}
			w.Header().Set("X-Answer", "42")
			api.WriteJSON(w, http.StatusCreated, map[string]bool{"ok": true})
		})
		s.RegisterOpen(api.Route{Method: "GET", Path: "/api/v1/test/stream", MinRole: "public", LongLived: true},
			func(w http.ResponseWriter, r *http.Request) {
				if _, ok := r.Context().Deadline(); ok {
					t.Error("a long-lived route has a deadline")
				}
				time.Sleep(2 * time.Minute)
				w.WriteHeader(http.StatusOK)
			})

		serve := func(path string) (*httptest.ResponseRecorder, time.Duration) {
			start := time.Now()
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			return rec, time.Since(start)
		}

		rec, took := serve("/api/v1/test/stuck")
		var body struct {
			Error struct{ Code, RequestID string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("503 body %q: %v", rec.Body, err)
		}
		if rec.Code != http.StatusServiceUnavailable || body.Error.Code != "SERVICE_UNAVAILABLE" || took != 30*time.Second {
			t.Fatalf("stuck handler: %d %s after %s, want 503 SERVICE_UNAVAILABLE after 30s", rec.Code, rec.Body, took)
		}
		close(release)
		synctest.Wait() // the late answer goes nowhere

		rec, _ = serve("/api/v1/test/quick")
		if rec.Code != http.StatusCreated || rec.Header().Get("X-Answer") != "42" || rec.Body.String() != "{\"ok\":true}\n" {
			t.Fatalf("quick handler: %d %v %q", rec.Code, rec.Header(), rec.Body)
		}

		if rec, took = serve("/api/v1/test/stream"); rec.Code != http.StatusOK || took != 2*time.Minute {
			t.Fatalf("long-lived route: %d after %s", rec.Code, took)
		}
	})
}
