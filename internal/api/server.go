// Package api is the hub's HTTP core: routing under /api/v1 (every route with
// and without a trailing slash, never a redirect), request ids, the auth step
// and roles, rate limits, the tolerant body decoding of docs/api.md §1.2, the error
// shape of docs/api.md §1.5, the OpenAPI document derived from the registered routes
// and their body types, and the routes of the server itself: the liveness
// and readiness probes, Prometheus metrics, the WebSocket handshake of the
// live feed and the service information.
//
// The resources live in packages of their own under internal/api
// (accountapi, deviceapi, sensorapi, auditapi, alertapi, healthapi, logapi,
// and more) and in
// internal/debugapi. Each declares the small interfaces it needs from the
// domain and adds its routes with Register(s, deps), which the hub calls
// after New; they build on Group, Decode, Query, the path readers and the
// error writers of this package.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kaiserhub/kaiser/internal/auth"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/ingest"
)

// Pinger checks the database with a real round trip.
type Pinger interface {
	Ping(ctx context.Context) error
}

// CommitHealth reports why the store cannot commit, nil while it can.
type CommitHealth interface {
	CommitFault() error
}

// BrokerState reports the message bus connection.
type BrokerState interface {
	Connected() bool
}

// Deps are what the HTTP core needs from the rest of the hub, taken as small
// interfaces declared beside their use so that it can be tested with fakes.
type Deps struct {
	Version  string
	Store    Pinger
	Broker   BrokerState
	Registry *prometheus.Registry
	Logger   *slog.Logger
	DataDir  string
	// Commits reports whether the store can commit; readiness is false
	// while it cannot (nil: not checked).
	Commits CommitHealth
	// DiskReserve is the free space, in bytes, below which the hub is not
	// ready; 0 takes DefaultDiskReserve, a negative value keeps none.
	DiskReserve int64

	// Auth checks the tokens of the guarded routes and of the live feed's
	// handshake; without it there is no live feed.
	Auth    authenticator
	Devices deviceLookup
	Audit   auditRecorder
	Ingest  IngestStats

	// CORSOrigins are the allowed browser origins (default localhost:3000 and :5173).
	CORSOrigins []string
	// Live serves the WebSocket route; without it there is none.
	Live LiveFeed
	// RequestTimeout is the deadline of every route but the long-lived
	// ones (0: DefaultRequestTimeout).
	RequestTimeout time.Duration
}

// deviceLookup is what the HTTP core needs from the device registry: the
// device that the {esp_id} of a resource's route names.
type deviceLookup interface {
	Get(espID string) (device.Device, error)
}

var _ deviceLookup = (*device.Service)(nil)

// IngestStats is what the API reads from the ingest pipeline: a device's
// counters, and the pipeline's totals, arrival rate and drops by reason
// (docs/api.md §13).
type IngestStats interface {
	DeviceCounters(espID string) ingest.Counters
	Totals() (received int64, last time.Time)
	Rate() float64
	Dropped() map[string]int64
}

var _ IngestStats = (*ingest.Dispatcher)(nil)

// Route is one registered route with what the OpenAPI document needs.
type Route struct {
	Method, Path string
	MinRole      string // public, viewer, operator, admin, device
	Summary      string
	Tag          string
	Deprecated   bool
	// LongLived routes get no request deadline (see LongLived).
	LongLived bool
	// Request and Response are zero values of the body types (nil: not
	// documented); the OpenAPI schemas are derived from them.
	Request, Response any
	// Subtree marks a route whose last segment is {path}: it serves every
	// path below its prefix, and the bare prefix (the dashboard's /ui tree).
	Subtree bool
}

// Server holds the routes and readiness.
type Server struct {
	deps      Deps
	auth      authenticator
	devices   deviceLookup
	audit     auditRecorder
	ws        LiveFeed
	mux       *http.ServeMux
	dashboard http.Handler
	routes    []Route
	ready     atomic.Bool
	startedAt time.Time
	log       *slog.Logger
	reqs      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	mu        sync.Mutex
}

// New builds the server with the core's own routes: probes, metrics, health,
// the live feed, the OpenAPI document and the service information. The
// resource packages add theirs with Register.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if len(d.CORSOrigins) == 0 {
		d.CORSOrigins = []string{"http://localhost:3000", "http://localhost:5173"}
	}
	s := &Server{
		deps:      d,
		auth:      d.Auth,
		devices:   d.Devices,
		audit:     d.Audit,
		mux:       http.NewServeMux(),
		startedAt: time.Now(),
		log:       d.Logger,
	}
	s.instrumentation(d.Registry)

	s.probeRoutes(d.Registry)
	if d.Auth != nil && d.Live != nil {
		s.ws = d.Live
		d.Auth.OnRevoke(d.Live.Revoke)
		s.wsRoutes()
	}
	s.metaRoutes()
	return s
}

// instrumentation counts and times every request, registered in reg when
// there is one.
func (s *Server) instrumentation(reg *prometheus.Registry) {
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "god_kaiser_http_requests_total",
		Help: "HTTP requests by method, route template and status.",
	}, []string{"method", "route", "status"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "god_kaiser_http_request_duration_seconds",
		Help:    "HTTP request latency by method and route template.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route"})
	if reg == nil {
		return
	}

	uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "god_kaiser_uptime_seconds",
		Help: "Seconds since the hub started.",
	}, func() float64 { return s.Uptime().Seconds() })
	reg.MustRegister(s.reqs, s.latency, uptime)
}

// probeRoutes are the liveness and readiness probes and the metrics.
func (s *Server) probeRoutes(reg *prometheus.Registry) {
	g := s.Group("health")
	g.Public("GET", "/api/v1/health/live", "Liveness probe", s.live)
	g.Public("GET", "/api/v1/health/ready", "Readiness probe", s.readyz)
	if reg != nil {
		metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		g.Public("GET", "/metrics", "Prometheus metrics", metrics.ServeHTTP)
		g.Public("GET", "/api/v1/health/metrics", "Prometheus metrics (alias of /metrics)", metrics.ServeHTTP)
	}
}

// metaRoutes are the OpenAPI document and the service information; every
// other path is answered 404, or 405 for a known path and another method.
func (s *Server) metaRoutes() {
	g := s.Group("meta")
	g.Public("GET", "/api/v1/openapi.json", "OpenAPI document", s.openapi)
	g.Public("GET", "/openapi.json", "OpenAPI document (alias)", s.openapi)
	g.Public("GET", "/", "Service information", s.root)
	s.mux.HandleFunc("/", s.notFound)
}

// notFound answers unknown routes, or 405 when the path exists for other methods.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, r, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method "+r.Method+" not allowed", nil)
		return
	}
	WriteError(w, r, http.StatusNotFound, "NOT_FOUND", "route "+r.URL.Path+" not found", nil)
}

type serviceInfo struct {
	Service       string `json:"service"`
	Version       string `json:"version"`
	Status        string `json:"status"`
	MQTTConnected bool   `json:"mqtt_connected"`
	Environment   string `json:"environment"`
	Docs          string `json:"docs"`
	APIPrefix     string `json:"api_prefix"`
}

// SetDashboard makes GET / answer browsers (an Accept header that prefers
// HTML, docs/api.md §3) with h; every other client keeps the JSON service
// information.
func (s *Server) SetDashboard(h http.Handler) {
	s.mu.Lock()
	s.dashboard = h
	s.mu.Unlock()
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.notFound(w, r)
		return
	}
	w.Header().Add("Vary", "Accept")
	s.mu.Lock()
	dash := s.dashboard
	s.mu.Unlock()
	if dash != nil && PrefersHTML(r.Header.Get("Accept")) {
		dash.ServeHTTP(w, r)
		return
	}
	WriteJSON(w, http.StatusOK, serviceInfo{
		Service:       "kaiser",
		Version:       s.deps.Version,
		Status:        "online",
		MQTTConnected: s.BrokerConnected(),
		Environment:   "production",
		Docs:          "/api/v1/openapi.json",
		APIPrefix:     "/api/v1",
	})
}

// BrokerConnected reports whether the hub is connected to its message broker.
func (s *Server) BrokerConnected() bool { return s.deps.Broker != nil && s.deps.Broker.Connected() }

// Close ends every WebSocket session with 1001 (the hub is going away).
func (s *Server) Close() {
	if s.ws != nil {
		s.ws.Close()
	}
}

// SetIngest connects the ingest counters once the pipeline exists.
func (s *Server) SetIngest(i IngestStats) {
	s.mu.Lock()
	s.deps.Ingest = i
	s.mu.Unlock()
}

// Ingest is the ingest pipeline's counters, nil until SetIngest.
func (s *Server) Ingest() IngestStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deps.Ingest
}

// SetReady flips readiness once the store, broker and domain are up.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Uptime is the time since the server was built (the hub's start).
func (s *Server) Uptime() time.Duration { return time.Since(s.startedAt) }

// Ready reports whether the hub has finished starting.
func (s *Server) Ready() bool { return s.ready.Load() }

// Logger is the HTTP layer's logger, for failures a handler logs but does not answer.
func (s *Server) Logger() *slog.Logger { return s.log }

// handle registers a route and its trailing-slash twin; HEAD is served
// wherever GET is (ServeMux does that for GET patterns).
func (s *Server) handle(rt Route, h http.HandlerFunc) {
	s.mu.Lock()
	s.routes = append(s.routes, rt)
	s.mu.Unlock()
	if !rt.LongLived {
		h = s.bounded(h)
	}
	wrapped := s.instrument(rt.Path, h)
	if rt.Subtree {
		prefix := strings.TrimSuffix(rt.Path, "{path}")
		if prefix == rt.Path || !strings.HasSuffix(prefix, "/") {
			panic(fmt.Sprintf("api: subtree route %s must end in /{path}", rt.Path))
		}
		s.mux.HandleFunc(rt.Method+" "+prefix+"{path...}", wrapped)
		s.mux.HandleFunc(rt.Method+" "+strings.TrimSuffix(prefix, "/"), wrapped)
		return
	}
	if rt.Path == "/" {
		s.mux.HandleFunc(rt.Method+" /{$}", wrapped)
		return
	}
	s.mux.HandleFunc(rt.Method+" "+rt.Path+"/{$}", wrapped)
	s.mux.Handle(rt.Method+" "+rt.Path, wrapped)
}

// RouteOption adds to what the OpenAPI document tells about a route.
type RouteOption func(*Route)

// Subtree makes a route ending in /{path} serve everything below its prefix.
func Subtree() RouteOption { return func(rt *Route) { rt.Subtree = true } }

// Accepts documents the request body type (a zero value of it).
func Accepts(body any) RouteOption { return func(rt *Route) { rt.Request = body } }

// Returns documents the success body type (a zero value of it).
func Returns(body any) RouteOption { return func(rt *Route) { rt.Response = body } }

// Group registers the routes of one resource, which share an OpenAPI tag.
type Group struct {
	srv *Server
	tag string
}

// Group is the registrar of the routes tagged tag.
func (s *Server) Group(tag string) Group { return Group{srv: s, tag: tag} }

func (g Group) route(method, path, minRole, summary string, opts []RouteOption) Route {
	rt := Route{
		Method:  method,
		Path:    path,
		MinRole: minRole,
		Summary: summary,
		Tag:     g.tag,
	}
	for _, o := range opts {
		o(&rt)
	}
	return rt
}

// Add registers a route for users of at least minRole (see Register).
func (g Group) Add(method, path, minRole, summary string, h Authed, opts ...RouteOption) {
	g.srv.Register(g.route(method, path, minRole, summary, opts), h)
}

// Public registers a route anyone may call.
func (g Group) Public(method, path, summary string, h http.HandlerFunc, opts ...RouteOption) {
	g.srv.RegisterOpen(g.route(method, path, "public", summary, opts), h)
}

// Authed is a handler for an authenticated, authorised request.
type Authed func(w http.ResponseWriter, r *http.Request, p auth.Principal)

// Register adds a route for users of at least rt.MinRole (viewer, operator
// or admin); the guard answers 401 and 403 before h runs.
func (s *Server) Register(rt Route, h Authed) {
	if auth.RoleRank(rt.MinRole) == 0 {
		panic(fmt.Sprintf("api: route %s %s: %q is not a user role", rt.Method, rt.Path, rt.MinRole))
	}
	s.handle(rt, s.guard(rt.MinRole, h))
}

// RegisterOpen adds a route that no user token guards: rt.MinRole is public,
// or device for the firmware's routes, whose handlers check what the device
// sends.
func (s *Server) RegisterOpen(rt Route, h http.HandlerFunc) {
	if rt.MinRole != "public" && rt.MinRole != "device" {
		panic(fmt.Sprintf("api: open route %s %s: %q is neither public nor device", rt.Method, rt.Path, rt.MinRole))
	}
	s.handle(rt, h)
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
		if s.cors(w, r) {
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// cors sets CORS headers for allowed origins and answers preflights.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.originAllowed(origin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers",
		"X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-ID, X-API-Key")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// CORSOrigins are the allowed browser origins, defaults applied.
func (s *Server) CORSOrigins() []string { return append([]string(nil), s.deps.CORSOrigins...) }

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.deps.CORSOrigins {
		if o == origin {
			return true
		}
	}
	return false
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

type liveness struct {
	Success bool `json:"success"`
	Alive   bool `json:"alive"`
}

func (s *Server) live(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, liveness{Success: true, Alive: true})
}

type readinessChecks struct {
	Database        bool `json:"database"`
	MQTT            bool `json:"mqtt"`
	StartupComplete bool `json:"startup_complete"`
	DiskSpace       bool `json:"disk_space"`
}

// readiness is the probe's body; while not ready it also carries the error shape.
type readiness struct {
	Success bool            `json:"success"`
	Ready   bool            `json:"ready"`
	Checks  readinessChecks `json:"checks"`
	Detail  string          `json:"detail,omitempty"`
	Error   *errorInfo      `json:"error,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := readinessChecks{
		Database:        s.deps.Store != nil && s.deps.Store.Ping(ctx) == nil,
		MQTT:            s.BrokerConnected(),
		StartupComplete: s.ready.Load(),
		DiskSpace:       s.canStore(),
	}

	ok := checks.Database && checks.MQTT && checks.StartupComplete && checks.DiskSpace
	body := readiness{Success: ok, Ready: ok, Checks: checks}
	if ok {
		WriteJSON(w, http.StatusOK, body)
		return
	}
	body.Detail = "hub is not ready"
	body.Error = &errorInfo{
		Code:      "NOT_READY",
		Message:   "hub is not ready",
		Details:   checks,
		RequestID: RequestID(r),
	}
	WriteJSON(w, http.StatusServiceUnavailable, body)
}

// canStore is the readiness check disk_space: the data directory keeps its
// reserve free and the store commits (docs/api.md §13). A hub that cannot
// store what it receives withholds its QoS 1 acknowledgements and fails
// its writes; it must not look ready meanwhile.
func (s *Server) canStore() bool {
	reserve := s.deps.DiskReserve
	if reserve == 0 {
		reserve = DefaultDiskReserve
	}
	if !diskOK(s.deps.DataDir, reserve) {
		return false
	}
	return s.deps.Commits == nil || s.deps.Commits.CommitFault() == nil
}

// WSStats reports the live-feed counters.
func (s *Server) WSStats() map[string]any {
	if s.ws == nil {
		return map[string]any{}
	}
	st := s.ws.Stats()
	return map[string]any{
		"active_connections":      st.ActiveConnections,
		"total_messages_sent":     st.MessagesSent,
		"messages_coalesced":      st.MessagesCoalesced,
		"slow_client_disconnects": st.SlowClientDisconnects,
	}
}
