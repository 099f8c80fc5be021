// Package api is the hub's HTTP interface: routing under /api/v1 (every
// route with and without a trailing slash, never a redirect), request ids,
// the error shape of API §1.5, health probes and Prometheus metrics.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Pinger checks the database with a real round trip.
type Pinger interface {
	Ping(ctx context.Context) error
}

// BrokerState reports the message bus connection.
type BrokerState interface {
	Connected() bool
}

// Deps are what the HTTP layer needs from the rest of the hub.
type Deps struct {
	Version  string
	Store    Pinger
	Broker   BrokerState
	Registry *prometheus.Registry
	Logger   *slog.Logger
	DataDir  string
}

// Route is one registered route, for the OpenAPI coverage test.
type Route struct {
	Method, Path string
}

// Server holds the routes and readiness.
type Server struct {
	deps      Deps
	mux       *http.ServeMux
	routes    []Route
	ready     atomic.Bool
	startedAt time.Time
	log       *slog.Logger
	reqs      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	mu        sync.Mutex
}

// New builds the server with the routes of this package.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Server{deps: d, mux: http.NewServeMux(), startedAt: time.Now(), log: d.Logger,
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_http_requests_total",
			Help: "HTTP requests by method, route template and status."}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "god_kaiser_http_request_duration_seconds",
			Help: "HTTP request latency by method and route template.", Buckets: prometheus.DefBuckets}, []string{"method", "route"}),
	}
	if d.Registry != nil {
		d.Registry.MustRegister(s.reqs, s.latency, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "god_kaiser_uptime_seconds", Help: "Seconds since the hub started."},
			func() float64 { return time.Since(s.startedAt).Seconds() }))
	}
	s.Handle("GET", "/api/v1/health/live", s.live)
	s.Handle("GET", "/api/v1/health/ready", s.readyz)
	if d.Registry != nil {
		metrics := promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})
		s.Handle("GET", "/metrics", metrics.ServeHTTP)
		s.Handle("GET", "/api/v1/health/metrics", metrics.ServeHTTP)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, http.StatusNotFound, "NOT_FOUND", "route "+r.URL.Path+" not found", nil)
	})
	return s
}

// SetReady flips readiness once the store, broker and domain are up.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Handle registers method+path (a ServeMux pattern path) and its
// trailing-slash twin; HEAD is served wherever GET is.
func (s *Server) Handle(method, path string, h http.HandlerFunc) {
	s.mu.Lock()
	s.routes = append(s.routes, Route{Method: method, Path: path})
	s.mu.Unlock()
	wrapped := s.instrument(path, h)
	s.mux.HandleFunc(method+" "+path+"/{$}", wrapped)
	s.mux.Handle(method+" "+path, wrapped)
}

// Routes lists the registered routes, sorted.
func (s *Server) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Route(nil), s.routes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Handler is the root handler with the request-id middleware.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		s.mux.ServeHTTP(w, r)
	})
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func validRequestID(id string) bool { return requestIDPattern.MatchString(id) }

type requestIDKey struct{}

// RequestID returns the request id of r.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (WebSocket hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if rec := recover(); rec != nil {
				s.log.Error("http handler panic", "route", route, "request_id", RequestID(r), "panic", rec)
				if sw.status == 0 {
					WriteError(sw, r, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error", nil)
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			s.reqs.WithLabelValues(r.Method, route, statusLabel(status)).Inc()
			s.latency.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
		}()
		h(sw, r)
	}
}

func statusLabel(code int) string { return strconv.Itoa(code) }

// WriteJSON writes v as a JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes the API §1.5 error body.
func WriteError(w http.ResponseWriter, r *http.Request, status int, code, msg string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	WriteJSON(w, status, map[string]any{"success": false, "detail": msg,
		"error": map[string]any{"code": code, "message": msg, "details": details, "request_id": RequestID(r)}})
}

func (s *Server) live(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]any{"success": true, "alive": true})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	db := s.deps.Store != nil && s.deps.Store.Ping(ctx) == nil
	mq := s.deps.Broker != nil && s.deps.Broker.Connected()
	started := s.ready.Load()
	disk := diskOK(s.deps.DataDir)
	checks := map[string]any{"database": db, "mqtt": mq, "startup_complete": started, "disk_space": disk}
	ok := db && mq && started
	body := map[string]any{"success": ok, "ready": ok, "checks": checks}
	if !ok {
		body["detail"] = "hub is not ready"
		body["error"] = map[string]any{"code": "NOT_READY", "message": "hub is not ready", "details": checks, "request_id": RequestID(r)}
		WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	WriteJSON(w, http.StatusOK, body)
}
