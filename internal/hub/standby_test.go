package hub

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kaiserhub/kaiser/internal/api/healthapi"
	"github.com/kaiserhub/kaiser/internal/lease"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// linkTo is a replica link whose lease row names primary at url, as read
// just now (so no database is asked).
func linkTo(self, selfURL, primary, url string) *replicaLink {
	return &replicaLink{holder: self, url: selfURL, checked: time.Now(),
		primary: &healthapi.ReplicaPeer{Holder: primary, URL: url}}
}

// A standby forwards with the client's Host and its signed address, which
// the primary takes as the client's; a forged or missing signature is
// ignored and never reaches the API.
func TestForwardedClientAddress(t *testing.T) {
	key := forwardKeyOf([]byte("replicas-share-this-secret"))
	type seen struct{ remote, host, client, sig string }
	got := make(chan seen, 1)
	primary := httptest.NewServer(trustForwarded(key, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.RemoteAddr, r.Host, r.Header.Get(headerClient), r.Header.Get(headerClientSig)}
	})))
	defer primary.Close()

	fw := newForwarder(http.NotFoundHandler(), linkTo("b", "http://b:8000", "a", primary.URL), key, slog.New(slog.DiscardHandler))
	req := httptest.NewRequest("GET", "http://hub.lan:8000/api/v1/esp/devices", nil)
	req.RemoteAddr = "192.0.2.7:51000"
	rec := httptest.NewRecorder()
	fw.ServeHTTP(rec, req)
	s := <-got
	if host, _, _ := net.SplitHostPort(s.remote); host != "192.0.2.7" || s.host != "hub.lan:8000" {
		t.Fatalf("the primary saw client %s host %s, want 192.0.2.7 and hub.lan:8000", s.remote, s.host)
	}
	if s.client != "" || s.sig != "" {
		t.Fatalf("the replica headers reached the API: %+v", s)
	}

	// A client that forges the header straight to the primary stays itself.
	forged, _ := http.NewRequest("GET", primary.URL+"/x", nil)
	forged.Header.Set(headerClient, "203.0.113.9")
	forged.Header.Set(headerClientSig, signClient([]byte("guessed"), "203.0.113.9"))
	resp, err := http.DefaultClient.Do(forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s.client != "" || !net.ParseIP(hostOf(s.remote)).IsLoopback() {
		t.Fatalf("a forged address was trusted: %+v", s)
	}
}

// A standby never forwards to itself (the lease row still names its
// previous process) nor a request another replica forwarded (a loop).
func TestForwarderRefusesLoops(t *testing.T) {
	key := forwardKeyOf([]byte("s"))
	self := newForwarder(http.NotFoundHandler(), linkTo("b2", "http://b:8000", "b1", "http://b:8000"), key, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	self.ServeHTTP(rec, httptest.NewRequest("GET", "http://b:8000/api/v1/esp/devices", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("forward to its own URL: %d %s", rec.Code, rec.Body)
	}

	other := newForwarder(http.NotFoundHandler(), linkTo("b", "http://b:8000", "a", "http://a:8000"), key, slog.New(slog.DiscardHandler))
	req := httptest.NewRequest("GET", "http://b:8000/api/v1/esp/devices", nil)
	req.Header.Set(headerClient, "192.0.2.7")
	rec = httptest.NewRecorder()
	other.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("a forwarded request forwarded again: %d %s", rec.Code, rec.Body)
	}
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// recordingBus is a MessageBus that counts what it published.
type recordingBus struct {
	MessageBus
	published int
}

func (b *recordingBus) Publish(context.Context, string, []byte, byte, bool) error {
	b.published++
	return nil
}

// A primary's bus publishes while its term lasts and refuses once it is
// over, so nothing leaves a replica that is no longer the primary.
func TestTermBusStopsWithTheTerm(t *testing.T) {
	ctx := context.Background()
	// A server of this test's own: the hub package has no pgtest.Main.
	dsn := pgtest.Start(t, pgtest.Config{}).NewDatabase(t)
	st, err := postgres.Open(ctx, dsn, postgres.Options{}) // applies the leases' migrations
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close(ctx)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m, err := lease.New(pool, lease.Config{Holder: lease.NewHolderID(), Names: []string{lease.Jobs},
		TTL: 2 * time.Second, RenewEvery: 500 * time.Millisecond, RetryEvery: 100 * time.Millisecond,
		Margin: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(mctx)
	}()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	term, err := m.Await(actx, lease.Jobs)
	if err != nil {
		t.Fatal(err)
	}

	inner := &recordingBus{}
	bus := termBus{MessageBus: inner, term: term}
	if err := bus.Publish(ctx, "kaiser/god/esp/ESP_1/actuator/5/command", nil, 1, false); err != nil || inner.published != 1 {
		t.Fatalf("within the term: %v, %d published", err, inner.published)
	}
	stop()
	<-done
	if err := bus.Publish(ctx, "kaiser/god/esp/ESP_1/actuator/5/command", nil, 1, false); !errors.Is(err, ErrLeaseLost) ||
		inner.published != 1 {
		t.Fatalf("after the term: %v, %d published", err, inner.published)
	}
}

// A fail-safe publish goes out during the term's grace and not after it.
func TestGraceBusPublishesOnlyDuringTheGrace(t *testing.T) {
	inner := &recordingBus{}
	during := graceBus{bus: inner, until: time.Now().Add(time.Hour)}
	if err := during.Publish(t.Context(), "kaiser/god/esp/ESP_1/actuator/5/command", nil, 1, false); err != nil ||
		inner.published != 1 {
		t.Fatalf("during the grace: %v, %d published", err, inner.published)
	}
	after := graceBus{bus: inner, until: time.Now()}
	if err := after.Publish(t.Context(), "kaiser/god/esp/ESP_1/actuator/5/command", nil, 1, false); !errors.Is(err, errGraceOver) ||
		inner.published != 1 {
		t.Fatalf("after the grace: %v, %d published", err, inner.published)
	}
}
