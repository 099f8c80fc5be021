package hub

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/kaiserhub/kaiser/internal/api"
	"github.com/kaiserhub/kaiser/internal/api/healthapi"
	"github.com/kaiserhub/kaiser/internal/contract"
)

// standbySteps start a standby (docs/decisions/0029-replicas.md): the
// store, the broker client on the shared subscriptions only, the device
// registry and sensor configs that admission and conversion read, the
// reading sink, and an HTTP server that answers the probes itself and
// forwards everything else to the primary. No actuator, emergency, rule,
// sequence or zone service exists here, and no job runs: those are the
// primary's alone.
func (h *Hub) standbySteps() []func(context.Context) error {
	return []func(context.Context) error{
		h.listenHTTP,
		h.openStore,
		h.createBroker,
		h.loadAccounts, // alerts raised here address the users
		h.loadDevices,
		h.loadSensors,
		h.buildStandbyAPI,
		h.startRelay,
		h.startStandbyIngest,
		h.openStandby,
	}
}

// buildStandbyAPI builds the standby's HTTP server: the core's probes and
// metrics and the replica route are its own, every other request goes to
// the primary.
func (h *Hub) buildStandbyAPI(context.Context) error {
	h.API = api.New(api.Deps{
		Version:     h.cfg.Version,
		Store:       h.Store,
		Broker:      h.Bus,
		Registry:    h.Registry,
		Logger:      h.Log.With("component", "api"),
		DataDir:     h.cfg.DataDir,
		Commits:     h.Store,
		DiskReserve: h.cfg.DiskReserve,
		Devices:     h.Devices,
	})
	healthapi.RegisterReplica(h.API, h)
	h.httpSrv = &http.Server{
		Handler:           newForwarder(h.API.Handler(), h.cfg.link, h.Log.With("component", "forward")),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.Log.Handler(), slog.LevelWarn),
		TLSConfig:         h.httpsConfig(),
	}
	return nil
}

// startStandbyIngest handles the shared topics, readings and diagnostics,
// with the same handlers as the primary, and subscribes to them only.
func (h *Hub) startStandbyIngest(context.Context) error {
	d := h.newDispatcher()
	d.Handle(contract.KindSensorData, h.Sensors.HandleData)
	d.Handle(contract.KindDiagnostics, h.Devices.HandleGated())
	d.Start()
	h.API.SetIngest(d)

	if err := h.External.Ordered(context.Background(), false); err != nil {
		return err
	}
	h.subscribeExternal(d)
	return nil
}

// openStandby serves the HTTP server and connects to the broker.
func (h *Hub) openStandby(context.Context) error {
	go func() { h.httpErr <- h.httpSrv.Serve(h.httpLn) }()
	h.serveHTTPS()
	if err := h.Bus.Start(); err != nil {
		return err
	}
	h.serving.Store(true)
	h.API.SetReady(true)
	return nil
}

// localPaths are what a standby answers itself: whether it lives and is
// ready, its metrics, and who the primary is.
var localPaths = map[string]bool{
	"/api/v1/health/live":    true,
	"/api/v1/health/ready":   true,
	"/api/v1/health/replica": true,
	"/api/v1/health/metrics": true,
	"/metrics":               true,
}

// forwarder sends a standby's requests to the primary, WebSocket upgrades
// included, and answers the local paths itself.
type forwarder struct {
	local http.Handler
	link  *replicaLink
	proxy *httputil.ReverseProxy
}

func newForwarder(local http.Handler, link *replicaLink, log *slog.Logger) *forwarder {
	f := &forwarder{local: local, link: link}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(r.In.Context().Value(primaryKey{}).(*url.URL))
			r.SetXForwarded()
		},
		// Live events stream through at once.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("forward to the primary failed", "path", r.URL.Path, "error", err)
			api.WriteError(w, r, http.StatusBadGateway, "PRIMARY_UNREACHABLE",
				"this replica is a standby and could not reach the primary; retry", nil)
		},
	}
	return f
}

type primaryKey struct{}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if localPaths[r.URL.Path] {
		f.local.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	p := f.link.primaryPeer(ctx)
	cancel()
	var target *url.URL
	if p != nil && p.Holder != f.link.holder {
		target, _ = url.Parse(p.URL)
	}
	if target == nil || target.Host == "" {
		w.Header().Set("Retry-After", "2")
		api.WriteError(w, r, http.StatusServiceUnavailable, "NO_PRIMARY",
			"this replica is a standby and no primary holds the jobs lease yet (a takeover takes up to 15 s); retry", nil)
		return
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), primaryKey{}, target)))
}
