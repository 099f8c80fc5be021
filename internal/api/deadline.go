package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultRequestTimeout is the deadline of every request but the
// long-lived ones (docs/api.md §1.1: a request finishes, with a success or
// an error, within 30 s).
const DefaultRequestTimeout = 30 * time.Second

// LongLived marks a route that holds its connection for longer than a
// request: the WebSocket feed, a stream or a long poll. It gets no request
// deadline, and its handler may hijack or flush the connection.
func LongLived() RouteOption { return func(rt *Route) { rt.LongLived = true } }

// bounded gives h the request deadline: its context ends after timeout,
// and if h has not answered by then the client gets 503
// SERVICE_UNAVAILABLE while h, still running, writes into the void. The
// answer is buffered until h returns, so a late handler can never mix its
// bytes into the 503. Without this a handler blocked on a saturated
// database pool held its client, and its connection, for as long as the
// pool stayed saturated.
func (s *Server) bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout())
		defer cancel()
		bw := &bufferedWriter{header: http.Header{}}
		done := make(chan struct{})
		var panicked any
		go func() {
			defer close(done)
			defer func() { panicked = recover() }()
			h(bw, r.WithContext(ctx))
		}()
		select {
		case <-done:
			if panicked != nil {
				panic(panicked) // the instrumentation answers 500 and logs it
			}
			bw.copyTo(w)
		case <-ctx.Done():
			bw.abandon()
			if r.Context().Err() != nil {
				return // the client left; nobody reads an answer
			}
			s.log.Warn("request deadline passed", "request_id", RequestID(r), "path", r.URL.Path,
				"after", s.requestTimeout())
			WriteError(w, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE",
				fmt.Sprintf("request did not finish within %s", s.requestTimeout()), nil)
		}
	}
}

func (s *Server) requestTimeout() time.Duration {
	if s.deps.RequestTimeout > 0 {
		return s.deps.RequestTimeout
	}
	return DefaultRequestTimeout
}

// bufferedWriter holds a bounded handler's answer until it returns.
type bufferedWriter struct {
	mu        sync.Mutex
	header    http.Header
	status    int
	body      bytes.Buffer
	abandoned bool
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.abandoned {
		return 0, http.ErrHandlerTimeout
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// abandon makes further writes fail: the deadline answered instead.
func (b *bufferedWriter) abandon() {
	b.mu.Lock()
	b.abandoned = true
	b.mu.Unlock()
}

// copyTo writes the held answer to w.
func (b *bufferedWriter) copyTo(w http.ResponseWriter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dst := w.Header()
	for k, v := range b.header {
		dst[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
