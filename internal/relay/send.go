package relay

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
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
// count what it missed. The bus's publishers encode the events and leave
// them in the inbox (a tap, docs/decisions/0032-fewer-hand-offs.md); one
// goroutine owns the rest, and wakes once per notification rather than
// once per event.
type sender struct {
	r  *Relay
	in *inbox

	conn    *pgx.Conn // nil while disconnected
	retryAt time.Time // no reconnect before
	wait    time.Duration
	down    bool // in an outage, already logged
	closing bool // Run is ending: send on the open connection only

	seq     uint64   // number of the next event sent
	batch   [][]byte // encoded events waiting
	size    int      // their bytes with the commas between them
	payload []byte   // reused for every notification
	taken   [][]byte // reused for what the inbox hands over
	// notify sends one notification (send; a test's recorder).
	notify func(ctx context.Context, payload []byte) error

	warnedOversize atomic.Bool
}

func newSender(r *Relay) *sender {
	s := &sender{r: r, in: newInbox(r.cfg.QueueSize, maxPayload-r.overhead)}
	s.notify = s.send
	return s
}

func (s *sender) run(ctx context.Context) {
	// Local events only: remote events never reach it, so nothing is
	// sent on and no event goes round in circles.
	tap := s.r.cfg.Bus.Tap(s.offer, s.r.cfg.Types...)
	timer := time.NewTimer(s.r.cfg.MaxDelay)
	timer.Stop()
	defer timer.Stop()
	armed := false

	for {
		select {
		case <-ctx.Done():
			s.r.cfg.Bus.Unsubscribe(tap)
			s.shutdown(ctx)
			return
		case <-s.in.wake:
			if s.in.full() {
				// A notification's worth: no reason to wait for more. What
				// does not fill one waits in the batch for the timer.
				s.fill(ctx, s.in.take(s.taken[:0]))
			}
			if !armed && (len(s.batch) > 0 || s.in.len() > 0) {
				timer.Reset(s.r.cfg.MaxDelay)
				armed = true
			}
		case <-timer.C:
			armed = false
			s.fill(ctx, s.in.take(s.taken[:0]))
			s.flush(ctx)
		}
	}
}

// offer encodes a local event into the inbox. It is the bus's tap and
// runs on the publisher's goroutine: it never waits.
func (s *sender) offer(e event.Event) {
	b, err := event.Encode(e)
	if err != nil {
		s.r.dropped[dropEncode].Add(1)
		s.r.log.Debug("relay: event not encoded", "type", e.Type(), "err", err)
		return
	}
	if s.r.overhead+len(b) > maxPayload {
		s.r.dropped[dropOversize].Add(1)
		level := s.r.log.Debug
		if s.warnedOversize.CompareAndSwap(false, true) {
			level = s.r.log.Warn
		}
		level("relay: event too large for a notification, not relayed (later ones at debug level)",
			"type", e.Type(), "bytes", len(b), "limit", maxPayload-s.r.overhead)
		return
	}
	switch s.in.put(b) {
	case putFull:
		s.r.dropped[dropQueueFull].Add(1)
	case putClosed:
		// The sender has stopped: a Publish under way when the relay
		// ended has no connection left to go out on.
		s.r.dropped[dropSendFailed].Add(1)
	}
}

// fill adds events taken from the inbox to the batch, sending every
// notification they fill; the rest stays in the batch. events is kept
// for the next take.
func (s *sender) fill(ctx context.Context, events [][]byte) {
	for _, b := range events {
		s.add(ctx, b)
	}
	clear(events)
	s.taken = events[:0]
}

// shutdown sends what is queued on the connection still open, within one
// call timeout, and closes it.
func (s *sender) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.r.cfg.CallTimeout)
	defer cancel()
	s.closing = true
	s.fill(ctx, s.in.close(s.taken[:0]))
	s.flush(ctx)
	if s.conn != nil {
		s.r.close(s.conn)
	}
}

// add puts an encoded event in the batch, sending the batch first when
// it does not fit.
func (s *sender) add(ctx context.Context, b []byte) {
	if len(s.batch) > 0 && s.r.overhead+s.size+1+len(b) > maxPayload {
		s.flush(ctx)
	}
	if len(s.batch) > 0 {
		s.size++
	}
	s.batch = append(s.batch, b)
	s.size += len(b)
}

// inbox holds the encoded events that wait for the sender. put signals
// wake when the inbox stops being empty (the sender starts its MaxDelay
// wait) and when it becomes full: a notification's worth of bytes, or
// its count bound (the sender sends at once). Between the two, events are
// added without waking anyone.
type inbox struct {
	wake chan struct{}

	mu       sync.Mutex
	events   [][]byte
	bytes    int // of the events, with a comma each
	maxCount int // events held at most; beyond, put refuses (Config.QueueSize)
	fullAt   int // bytes that fill a notification
	closed   bool
}

func newInbox(maxCount, fullAt int) *inbox {
	return &inbox{wake: make(chan struct{}, 1), maxCount: maxCount, fullAt: fullAt}
}

// What put did with an event.
type putResult int

const (
	putOK     putResult = iota
	putFull             // refused: the inbox holds maxCount events
	putClosed           // refused: the sender has stopped
)

// put adds b unless the inbox is full or closed.
func (in *inbox) put(b []byte) putResult {
	in.mu.Lock()
	switch {
	case in.closed:
		in.mu.Unlock()
		return putClosed
	case len(in.events) >= in.maxCount:
		in.mu.Unlock()
		return putFull
	}
	wasFull := in.fullLocked()
	in.events = append(in.events, b)
	in.bytes += len(b) + 1
	signal := len(in.events) == 1 || !wasFull && in.fullLocked()
	in.mu.Unlock()

	if signal {
		select {
		case in.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return putOK
}

// take appends the held events to dst and empties the inbox.
func (in *inbox) take(dst [][]byte) [][]byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	dst = append(dst, in.events...)
	clear(in.events)
	in.events, in.bytes = in.events[:0], 0
	return dst
}

// close is take, after which put refuses: nothing is left behind unsent
// and uncounted.
func (in *inbox) close(dst [][]byte) [][]byte {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	return in.take(dst)
}

func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.events)
}

func (in *inbox) full() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fullLocked()
}

func (in *inbox) fullLocked() bool { return in.bytes >= in.fullAt || len(in.events) >= in.maxCount }

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

	if err := s.notify(ctx, p); err != nil {
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
