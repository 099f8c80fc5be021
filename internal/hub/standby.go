package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
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
	h.API = api.New(h.apiDeps())
	healthapi.RegisterReplica(h.API, h)
	h.httpSrv = &http.Server{
		Handler:           newForwarder(h.API.Handler(), h.cfg.link, h.forwardKey, h.Log.With("component", "forward")),
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
// included, and answers the local paths itself. The client's address goes
// along signed with the replicas' shared key, so the primary's per-client
// limits and audit see the client, not the standby (trustForwarded).
type forwarder struct {
	local http.Handler
	link  *replicaLink
	key   []byte
	proxy *httputil.ReverseProxy
}

// Headers between replicas: the client's address and its signature. A
// request that arrives with them was forwarded already; forwarding it
// again would be a loop.
const (
	headerClient    = "X-Kaiser-Client"
	headerClientSig = "X-Kaiser-Client-Sig"
)

func newForwarder(local http.Handler, link *replicaLink, key []byte, log *slog.Logger) *forwarder {
	f := &forwarder{local: local, link: link, key: key}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(r.In.Context().Value(primaryKey{}).(*url.URL))
			// The host the client asked for: the WebSocket's same-origin
			// check compares it with the Origin.
			r.Out.Host = r.In.Host
			r.SetXForwarded()
			ip := api.ClientIP(r.In)
			r.Out.Header.Set(headerClient, ip)
			r.Out.Header.Set(headerClientSig, signClient(f.key, ip))
		},
		// Never through an HTTP proxy from the environment: requests carry
		// tokens, and the primary is a peer on the site's network.
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 40 * time.Second, // the primary's own write deadline is 35 s
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
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
	if r.Header.Get(headerClient) != "" {
		// Another replica took this one for the primary (a stale lease row).
		w.Header().Set("Retry-After", "2")
		api.WriteError(w, r, http.StatusServiceUnavailable, "NO_PRIMARY",
			"the request reached a standby from another replica; the primary is changing, retry", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	p := f.link.primaryPeer(ctx)
	cancel()
	var target *url.URL
	// Not to itself: after a restart the row may still name this
	// replica's previous process, at this replica's own URL.
	if p != nil && p.Holder != f.link.holder && p.URL != f.link.url {
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

// forwardKeyOf derives the key that signs forwarded client addresses from
// the JWT secret every replica shares.
func forwardKeyOf(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("kaiser replica forwarding"))
	return m.Sum(nil)
}

func signClient(key []byte, ip string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ip))
	return hex.EncodeToString(m.Sum(nil))
}

// trustForwarded is the primary's side: a request whose client address a
// standby signed is served as if from that client; the headers never
// reach the API, signed or not.
func trustForwarded(key []byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, sig := r.Header.Get(headerClient), r.Header.Get(headerClientSig)
		if ip != "" || sig != "" {
			r = r.Clone(r.Context())
			r.Header.Del(headerClient)
			r.Header.Del(headerClientSig)
			want := signClient(key, ip)
			if net.ParseIP(ip) != nil && hmac.Equal([]byte(sig), []byte(want)) {
				r.RemoteAddr = net.JoinHostPort(ip, "0")
			}
		}
		next.ServeHTTP(w, r)
	})
}
