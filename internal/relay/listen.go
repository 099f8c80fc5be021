package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kaiserhub/kaiser/internal/event"
)

// listener publishes the other replicas' notifications on the bus. One
// goroutine owns all of it.
type listener struct {
	r *Relay
	// next is, per origin, the number of the event expected next; it
	// outlives reconnects, so the first batch after an outage shows what
	// was missed.
	next         map[string]uint64
	warnedDecode bool
}

func newListener(r *Relay) *listener { return &listener{r: r, next: map[string]uint64{}} }

// batch is a notification as the sender builds it.
type batch struct {
	Origin string      `json:"origin"`
	Seq    uint64      `json:"seq"`
	Events []event.Raw `json:"events"`
}

func (l *listener) run(ctx context.Context) {
	var (
		wait      time.Duration
		downSince time.Time // zero while listening or before the first failure
	)
	for {
		conn, err := l.connect(ctx)
		if err == nil {
			if !downSince.IsZero() {
				l.r.log.Info("relay: listening again", "after", time.Since(downSince).Round(time.Millisecond))
				downSince = time.Time{}
			}
			wait = 0
			err = l.listen(ctx, conn)
			l.r.close(conn)
		}
		if ctx.Err() != nil {
			return
		}
		if downSince.IsZero() {
			downSince = time.Now()
			l.r.log.Warn("relay: not listening; other replicas' events are lost until it reconnects", "err", err)
		}
		wait = retry(wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connect opens the listening connection.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := l.r.connect(ctx, l.r.listenCfg)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.r.cfg.CallTimeout)
	defer cancel()
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{l.r.cfg.Channel}.Sanitize()); err != nil {
		l.r.close(conn)
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	return conn, nil
}

// listen handles notifications until conn fails or ctx ends.
func (l *listener) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		// The wait is bounded so that a connection gone silent (a dead
		// peer without a reset) is found by the ping within idlePing.
		wctx, cancel := context.WithTimeout(ctx, idlePing)
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			l.handle(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !idle || conn.IsClosed():
			return fmt.Errorf("relay: wait for notification: %w", err)
		}
		pctx, cancel := context.WithTimeout(ctx, l.r.cfg.CallTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("relay: ping: %w", err)
		}
	}
}

// handle publishes the events of another origin's notification.
func (l *listener) handle(payload string) {
	if strings.HasPrefix(payload, l.r.header) {
		return // our own
	}
	var b batch
	if err := json.Unmarshal([]byte(payload), &b); err != nil {
		l.undecodable(1, "", err)
		return
	}
	if next, ok := l.next[b.Origin]; ok && b.Seq > next {
		l.r.dropped[dropMissed].Add(int64(b.Seq - next))
	}
	l.next[b.Origin] = b.Seq + uint64(len(b.Events))
	for _, raw := range b.Events {
		e, err := raw.Event()
		if err != nil {
			l.undecodable(1, b.Origin, err)
			continue
		}
		e.Remote = true
		if f := l.r.cfg.Received; f != nil {
			f(e)
		}
		l.r.cfg.Bus.Publish(e)
		l.r.received.Add(1)
	}
}

// undecodable counts n lost events; the first is logged as a warning (a
// replica of another version, most likely), the others at debug level.
func (l *listener) undecodable(n int64, origin string, err error) {
	l.r.dropped[dropDecode].Add(n)
	level := l.r.log.Debug
	if !l.warnedDecode {
		level, l.warnedDecode = l.r.log.Warn, true
	}
	level("relay: remote event not decoded (later ones at debug level)", "origin", origin, "err", err)
}
