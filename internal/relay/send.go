package relay

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kaiserhub/kaiser/internal/event"
)

// sender batches the bus's local events into notifications:
//
//	{"origin":"<Origin>","seq":<number of the first event>,"events":[<event.Encode>,...]}
//
// The events of one origin are numbered without gaps, so a listener can
// count what it missed. One goroutine owns all of it.
type sender struct {
	r *Relay

	conn    *pgx.Conn // nil while disconnected
	retryAt time.Time // no reconnect before
	wait    time.Duration
	down    bool // in an outage, already logged
	closing bool // Run is ending: send on the open connection only

	seq     uint64   // number of the next event sent
	batch   [][]byte // encoded events waiting
	size    int      // their bytes with the commas between them
	payload []byte   // reused for every notification

	queueFull      int64 // the subscription's drops already counted
	warnedOversize bool
}

func newSender(r *Relay) *sender { return &sender{r: r} }

func (s *sender) run(ctx context.Context) {
	// A plain subscription: remote events never reach it, so nothing is
	// sent on and no event goes round in circles.
	sub := s.r.cfg.Bus.Subscribe(s.r.cfg.QueueSize, s.r.cfg.Types...)
	defer s.r.cfg.Bus.Unsubscribe(sub)
	timer := time.NewTimer(s.r.cfg.MaxDelay)
	timer.Stop()
	defer timer.Stop()

	for {
		select {
		case <-ctx.Done():
			s.shutdown(ctx, sub)
			return
		case e := <-sub.C:
			s.add(ctx, e)
			if len(s.batch) == 1 {
				timer.Reset(s.r.cfg.MaxDelay)
			}
		case <-timer.C:
			s.flush(ctx)
		}
		s.countQueueFull(sub)
	}
}

// shutdown sends what is queued on the connection still open, within one
// call timeout, and closes it.
func (s *sender) shutdown(ctx context.Context, sub *event.Subscription) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.r.cfg.CallTimeout)
	defer cancel()
	s.closing = true
	for done := false; !done; {
		select {
		case e := <-sub.C:
			s.add(ctx, e)
		default:
			done = true
		}
	}
	s.flush(ctx)
	s.countQueueFull(sub)
	if s.conn != nil {
		s.r.close(s.conn)
	}
}

func (s *sender) countQueueFull(sub *event.Subscription) {
	if d := sub.Dropped(); d != s.queueFull {
		s.r.dropped[dropQueueFull].Add(d - s.queueFull)
		s.queueFull = d
	}
}

// add puts e in the batch, sending the batch first when e does not fit.
func (s *sender) add(ctx context.Context, e event.Event) {
	b, err := event.Encode(e)
	if err != nil {
		s.r.dropped[dropEncode].Add(1)
		s.r.log.Debug("relay: event not encoded", "type", e.Type(), "err", err)
		return
	}
	if s.r.overhead+len(b) > maxPayload {
		s.r.dropped[dropOversize].Add(1)
		level := s.r.log.Debug
		if !s.warnedOversize {
			level, s.warnedOversize = s.r.log.Warn, true
		}
		level("relay: event too large for a notification, not relayed (later ones at debug level)",
			"type", e.Type(), "bytes", len(b), "limit", maxPayload-s.r.overhead)
		return
	}
	if len(s.batch) > 0 && s.r.overhead+s.size+1+len(b) > maxPayload {
		s.flush(ctx)
	}
	if len(s.batch) > 0 {
		s.size++
	}
	s.batch = append(s.batch, b)
	s.size += len(b)
}

// flush sends the batch as one notification.
func (s *sender) flush(ctx context.Context) {
	n := len(s.batch)
	if n == 0 {
		return
	}
	p := append(s.payload[:0], s.r.header...)
	p = strconv.AppendUint(p, s.seq, 10)
	p = append(p, `,"events":[`...)
	for i, b := range s.batch {
		if i > 0 {
			p = append(p, ',')
		}
		p = append(p, b...)
	}
	p = append(p, "]}"...)
	s.payload = p
	// Numbered whether or not the send succeeds: a failed batch is a gap
	// the listeners count as missed.
	s.seq += uint64(n)
	clear(s.batch)
	s.batch, s.size = s.batch[:0], 0

	if err := s.send(ctx, p); err != nil {
		s.r.dropped[dropSendFailed].Add(int64(n))
		return
	}
	s.r.sent.Add(int64(n))
	s.r.notifications.Add(1)
}

var errDisconnected = errors.New("relay: not connected")

// send notifies payload, (re)connecting first unless it is too soon.
func (s *sender) send(ctx context.Context, payload []byte) error {
	if s.conn == nil {
		if s.closing || time.Now().Before(s.retryAt) {
			return errDisconnected
		}
		conn, err := s.r.connect(ctx, s.r.notifyCfg)
		if err != nil {
			s.fail(ctx, err)
			return err
		}
		s.conn = conn
		if s.down {
			s.r.log.Info("relay: sending again")
		}
		s.down, s.wait = false, 0
	}
	cctx, cancel := context.WithTimeout(ctx, s.r.cfg.CallTimeout)
	defer cancel()
	_, err := s.conn.Exec(cctx, `SELECT pg_notify($1, $2)`, s.r.cfg.Channel, string(payload))
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !s.conn.IsClosed() {
		// The server refused this notification; the connection is fine.
		s.r.log.Warn("relay: notification refused", "err", err)
		return err
	}
	s.r.close(s.conn)
	s.conn = nil
	s.fail(ctx, err)
	return err
}

// fail schedules the next connect and logs the first failure of an outage.
func (s *sender) fail(ctx context.Context, err error) {
	s.wait = retry(s.wait)
	s.retryAt = time.Now().Add(s.wait)
	if !s.down && !s.closing && ctx.Err() == nil {
		s.r.log.Warn("relay: cannot send; local events are not relayed until it reconnects", "err", err)
	}
	s.down = true
}
