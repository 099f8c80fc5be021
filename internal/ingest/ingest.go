// Package ingest is the inbound MQTT pipeline (docs/protocol.md §5.2): broker
// callbacks route, size-check and enqueue; a fixed pool of workers runs the
// per-kind handlers with each device's messages strictly in arrival order,
// bounded queues with a stated overflow policy per kind, a deadline per
// handler, panic isolation and counted drop reasons.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaiserhub/kaiser/internal/contract"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Message is one inbound device message.
type Message struct {
	Topic    contract.Topic
	RawTopic string
	Payload  []byte
	// Retain is the RETAIN bit as delivered; Replay marks a delivery from the
	// broker's retained store (docs/protocol.md §5.6), which is what handlers act on.
	Retain     bool
	Replay     bool
	ReceivedAt time.Time

	// settle is set for a message whose publisher waits for its outcome
	// (SubmitSettled); nil for the others.
	settle *settlement
}

// settlement is what a waiting publisher learns about its message: the
// handler's verdict, then the commits of the writes the handler queued.
type settlement struct {
	commits *store.Commits
	verdict chan string // the drop reason, "" when handled; buffered
}

// Handler processes one message. It must honour ctx: the dispatcher cancels
// it at the handler deadline.
type Handler func(ctx context.Context, m Message) error

// DropError marks a message deliberately dropped by a handler.
type DropError struct {
	Reason string
	Msg    string
}

func (e *DropError) Error() string { return e.Reason + ": " + e.Msg }

// DropReason is the metric label.
func (e *DropError) DropReason() string { return e.Reason }

// Drop returns an error that counts the message as dropped with reason.
func Drop(reason, msg string) error { return &DropError{Reason: reason, Msg: msg} }

type dropReasoner interface{ DropReason() string }

// Policy is what happens when a device queue is full.
type Policy int

const (
	// DropOldest evicts the oldest queued message (telemetry).
	DropOldest Policy = iota
	// WaitThenDrop waits up to Config.BlockingWait for space, then drops the new message.
	WaitThenDrop
)

// PolicyFor states the overflow policy per kind (docs/protocol.md §5.2 step 3).
func PolicyFor(k contract.Kind) Policy {
	switch k {
	case contract.KindSensorData, contract.KindDiagnostics, contract.KindNewer:
		return DropOldest
	}
	return WaitThenDrop
}

// Config sizes the dispatcher; zero values take defaults.
type Config struct {
	Workers        int           // fixed worker pool size (default 8)
	QueueCapacity  int           // per-device queue bound (default 256)
	MaxDevices     int           // devices with queued work at once (default 20000)
	HandlerTimeout time.Duration // per-handler deadline (default 5 s)
	BlockingWait   time.Duration // wait for space for non-telemetry kinds (default 1 s)
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = 256
	}
	if c.MaxDevices <= 0 {
		c.MaxDevices = 20000
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = 5 * time.Second
	}
	if c.BlockingWait <= 0 {
		c.BlockingWait = time.Second
	}
}

// ErrStopped is returned by Submit after Stop.
var ErrStopped = errors.New("ingest stopped")

type deviceQueue struct {
	id string
	// buf is a ring that grows on demand up to limit: a device that
	// reports once a second holds a few slots, not QueueCapacity of them
	// (1,000 devices × 256 slots are some 36 MB of rings). A grown ring
	// is kept, so a bursting device does not allocate it again.
	buf       []Message
	limit     int
	head, n   int
	scheduled bool          // in the ready queue or being processed
	space     chan struct{} // signalled when a full queue frees a slot; made by the first waiter
}

// minQueueSlots is the ring a queue starts with.
const minQueueSlots = 4

func (q *deviceQueue) full() bool { return q.n >= q.limit }

// waitForSpace is the channel a publisher waits on for a slot of the full
// queue; d.mu is held. Most queues never fill, so it is made here.
func (q *deviceQueue) waitForSpace() chan struct{} {
	if q.space == nil {
		q.space = make(chan struct{}, 1)
	}
	return q.space
}

func (q *deviceQueue) push(m Message) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
}

func (q *deviceQueue) grow() {
	buf := make([]Message, min(max(2*len(q.buf), minQueueSlots), max(q.limit, 1)))
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = buf, 0
}

func (q *deviceQueue) pop() Message {
	m := q.buf[q.head]
	q.buf[q.head] = Message{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return m
}

// evictTelemetry removes the oldest queued telemetry message (a kind whose
// policy is DropOldest) that no publisher waits for, keeping the order of
// the rest. Lifecycle messages (wills, heartbeats, statuses, responses,
// acks, alerts) are never evicted: losing a will or a heartbeat to make
// room for a reading would change what the hub believes about the device
// (docs/protocol.md §5.2 step 3). False when nothing may be evicted.
func (q *deviceQueue) evictTelemetry() (Message, bool) {
	size := len(q.buf)
	for i := 0; i < q.n; i++ {
		at := (q.head + i) % size
		if q.buf[at].settle != nil || PolicyFor(q.buf[at].Topic.Kind) != DropOldest {
			continue
		}
		m := q.buf[at]
		for j := i; j+1 < q.n; j++ {
			q.buf[(q.head+j)%size] = q.buf[(q.head+j+1)%size]
		}
		q.n--
		q.buf[(q.head+q.n)%size] = Message{}
		return m, true
	}
	return Message{}, false
}

// slot is one worker's in-flight state, read by the watchdog.
type slot struct {
	// started is when the running handler began on the dispatcher's
	// monotonic clock (Dispatcher.elapsed, plus 1 so that 0 means idle).
	started  atomic.Int64
	detached atomic.Bool
	device   atomic.Value // string
}

// Dispatcher routes inbound messages to handlers.
type Dispatcher struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	handlers map[contract.Kind]Handler

	mu      sync.Mutex
	devices map[string]*deviceQueue
	// spareRings are the smallest rings of queues that emptied, for the
	// next queue: a device reporting once a second empties its queue after
	// every message, and a fresh ring per message was a tenth of what the
	// hub's own code allocated per reading.
	spareRings [][]Message
	pending    int // queued + in flight
	closing    bool
	stopped    bool
	drained    chan struct{}
	ready      chan *deviceQueue
	counters   *deviceCounters

	slotsMu sync.Mutex
	slots   map[*slot]struct{}

	baseCtx context.Context
	cancel  context.CancelFunc
	quit    chan struct{}
	wg      sync.WaitGroup
	logLim  *logLimiter
	now     func() time.Time // wall clock: receive times (docs/protocol.md T1)
	// epoch carries the monotonic reading the watchdog measures handler
	// runs against: a wall-clock step (NTP, an operator) must neither make
	// every running handler look an hour late nor hide a stuck one.
	epoch time.Time

	totalReceived atomic.Int64
	lastReceived  atomic.Int64
	arrivals      *arrivals
	drops         dropTotals
}

// New builds a dispatcher; register handlers, then Start.
func New(cfg Config, metrics *Metrics, log *slog.Logger) *Dispatcher {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now
	return &Dispatcher{
		cfg:      cfg,
		log:      log,
		metrics:  metrics,
		handlers: map[contract.Kind]Handler{},
		devices:  map[string]*deviceQueue{},
		drained:  make(chan struct{}),
		ready:    make(chan *deviceQueue, cfg.MaxDevices),
		counters: newDeviceCounters(cfg.MaxDevices),
		slots:    map[*slot]struct{}{},
		baseCtx:  ctx,
		cancel:   cancel,
		quit:     make(chan struct{}),
		logLim:   newLogLimiter(time.Second),
		now:      now,
		epoch:    time.Now(),
		arrivals: newArrivals(now()),
	}
}

// Handle registers the handler of a kind. Kinds without a handler are
// accepted and counted as handled (logged and ignored).
func (d *Dispatcher) Handle(k contract.Kind, h Handler) { d.handlers[k] = h }

// Start launches the worker pool and the deadline watchdog.
func (d *Dispatcher) Start() {
	for i := 0; i < d.cfg.Workers; i++ {
		d.startWorker()
	}
	d.wg.Add(1)
	go d.watchdog()
}

func (d *Dispatcher) startWorker() {
	s := &slot{}
	s.device.Store("")
	d.slotsMu.Lock()
	d.slots[s] = struct{}{}
	d.slotsMu.Unlock()
	d.wg.Add(1)
	go d.worker(s)
}

// Submit routes and enqueues one delivery; it never blocks longer than
// Config.BlockingWait. It is the only thing a broker callback calls.
func (d *Dispatcher) Submit(rawTopic string, payload []byte, retain, replay bool) {
	m, _, ok := d.accept(rawTopic, payload, retain, replay)
	if !ok {
		return
	}
	d.enqueue(m)
}

// Errors of SubmitSettled: the message must not be acknowledged.
var (
	// ErrUnsettled: the outcome was not known before the caller's deadline
	// (the message may still be stored later).
	ErrUnsettled = errors.New("message not settled in time")
	// ErrNotStored: a write of the message's handler failed.
	ErrNotStored = errors.New("message not stored")
)

// SubmitSettled hands over a message whose publisher waits for the
// outcome: a QoS 1 PUBLISH, acknowledged only once the message is committed
// or dropped with a counted reason (docs/protocol.md M3). It returns "" once
// the handler succeeded and every write it queued is committed, or the
// counted drop reason. It returns an error wrapping ErrUnsettled when ctx
// ends first, or ErrNotStored when a write failed; then nothing may be
// acknowledged.
//
// Unlike Submit, a full device queue makes it wait, until ctx ends, instead
// of applying the kind's policy, and no drop-oldest ever evicts the
// message once queued. The handler runs as for any message; it does not
// wait for its commits, so live events and rule triggers do not either:
// only this caller does.
func (d *Dispatcher) SubmitSettled(ctx context.Context, rawTopic string, payload []byte, retain bool) (string, error) {
	m, reason, ok := d.accept(rawTopic, payload, retain, false)
	if !ok {
		return reason, nil
	}
	m.settle = newSettlement()
	if reason, err := d.enqueueSettled(ctx, m); reason != "" || err != nil {
		return reason, err
	}
	return m.settle.wait(ctx, m.Topic.Kind)
}

func newSettlement() *settlement {
	return &settlement{commits: store.NewCommits(), verdict: make(chan string, 1)}
}

// wait returns the handler's verdict once every write it queued is
// committed; see SubmitSettled for the errors.
func (s *settlement) wait(ctx context.Context, kind contract.Kind) (string, error) {
	var reason string
	select {
	case reason = <-s.verdict:
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %s still queued or in its handler: %v", ErrUnsettled, kind, ctx.Err())
	}
	// A dropping handler may have queued writes too (a pending device's
	// last payload): a drop is settled once they are committed as well.
	if err := s.commits.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w: %s waiting for its commit: %v", ErrUnsettled, kind, err)
		}
		return "", fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return reason, nil
}

// accept routes, counts and size-checks a delivery. It returns ok=false
// with the counted reason when the delivery ends here.
func (d *Dispatcher) accept(rawTopic string, payload []byte, retain, replay bool) (Message, string, bool) {
	now := d.now()
	t, err := contract.ParseTopic(rawTopic)
	if err != nil {
		reason := reasonOf(err)
		d.drop(Message{RawTopic: rawTopic, Payload: payload, ReceivedAt: now}, reason, err)
		return Message{}, reason, false
	}
	m := Message{
		Topic:      t,
		RawTopic:   rawTopic,
		Payload:    payload,
		Retain:     retain,
		Replay:     replay,
		ReceivedAt: now,
	}
	d.totalReceived.Add(1)
	d.lastReceived.Store(now.UnixNano())
	d.arrivals.add(now)
	d.counters.received(t.EspID, replay)
	if d.metrics != nil {
		d.metrics.Received.WithLabelValues(string(t.Kind)).Inc()
	}
	switch {
	case len(payload) > contract.MaxInboundPayload:
		err := fmt.Errorf("payload of %d bytes exceeds %d", len(payload), contract.MaxInboundPayload)
		d.drop(m, contract.ReasonOversize, err)
		return m, contract.ReasonOversize, false
	case len(payload) == 0:
		// A retained-clear: not an error (docs/protocol.md §5.2 step 2).
		d.count(m, contract.ReasonEmpty)
		return m, contract.ReasonEmpty, false
	}
	return m, "", true
}

// enqueue queues m under its kind's policy (docs/protocol.md §5.2 step 3)
// and returns the counted drop reason when m itself is dropped, "" when it
// is queued.
func (d *Dispatcher) enqueue(m Message) string {
	policy := PolicyFor(m.Topic.Kind)
	var deadline *time.Timer
	var woken chan struct{}
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
		passWakeOn(woken)
	}()
	d.mu.Lock()
	for {
		q, err := d.queueLocked(m.Topic.EspID)
		if err != nil {
			d.mu.Unlock()
			d.drop(m, contract.ReasonQueueOverflow, err)
			return contract.ReasonQueueOverflow
		}
		if !q.full() {
			d.pushLocked(q, m)
			d.mu.Unlock()
			return ""
		}
		if policy == DropOldest {
			old, ok := q.evictTelemetry()
			if !ok {
				// Every queued message is lifecycle or has a publisher
				// waiting for it: the new telemetry is the one to go.
				d.mu.Unlock()
				d.drop(m, contract.ReasonQueueOverflow,
					errors.New("device queue full of lifecycle messages or messages awaiting acknowledgement"))
				return contract.ReasonQueueOverflow
			}
			q.push(m)
			d.mu.Unlock()
			d.drop(old, contract.ReasonQueueOverflow, errors.New("device queue full, oldest telemetry dropped"))
			return ""
		}
		space := q.waitForSpace()
		d.mu.Unlock()
		if deadline == nil {
			deadline = time.NewTimer(d.cfg.BlockingWait)
		}
		select {
		case <-space:
			woken = space
		case <-deadline.C:
			d.log.Warn("device queue full, message dropped", "esp_id", m.Topic.EspID, "kind", m.Topic.Kind)
			d.drop(m, contract.ReasonQueueOverflow, errors.New("device queue full for 1 s"))
			return contract.ReasonQueueOverflow
		}
		d.mu.Lock()
	}
}

// passWakeOn hands the wake-up a waiting publisher received to the next
// one waiting on the same channel, once the first is done (in, or dropped).
// Only a pop from a full queue signals space; a second pop before the
// first waiter got back in signals nothing, and a queue the worker emptied
// and dropped meanwhile never signals its channel again: without the
// hand-on the other waiters slept out their wait with room in the queue.
// A waiter woken for nothing finds the queue full and waits again.
func passWakeOn(woken chan struct{}) {
	if woken == nil {
		return
	}
	select {
	case woken <- struct{}{}:
	default:
	}
}

// enqueueSettled queues a message whose publisher waits: a full queue
// makes it wait for space until ctx ends, whatever its kind's policy. It
// returns a counted drop reason when the message cannot be queued at all,
// or an ErrUnsettled error when ctx ended first.
func (d *Dispatcher) enqueueSettled(ctx context.Context, m Message) (string, error) {
	var woken chan struct{}
	defer func() { passWakeOn(woken) }()
	d.mu.Lock()
	for {
		q, err := d.queueLocked(m.Topic.EspID)
		if errors.Is(err, ErrStopped) {
			d.mu.Unlock()
			return "", fmt.Errorf("%w: %w", ErrUnsettled, err)
		}
		if err != nil {
			d.mu.Unlock()
			d.drop(m, contract.ReasonQueueOverflow, err)
			return contract.ReasonQueueOverflow, nil
		}
		if !q.full() {
			d.pushLocked(q, m)
			d.mu.Unlock()
			return "", nil
		}
		space := q.waitForSpace()
		d.mu.Unlock()
		select {
		case <-space:
			woken = space
		case <-ctx.Done():
			d.log.Warn("device queue full; acknowledgement withheld", "esp_id", m.Topic.EspID, "kind", m.Topic.Kind)
			d.drop(m, contract.ReasonQueueOverflow, errors.New("device queue full until the acknowledgement deadline"))
			return "", fmt.Errorf("%w: device queue full: %v", ErrUnsettled, ctx.Err())
		}
		d.mu.Lock()
	}
}

// queueLocked returns the device's queue, creating it; d.mu is held.
func (d *Dispatcher) queueLocked(espID string) (*deviceQueue, error) {
	if d.stopped {
		return nil, ErrStopped
	}
	q := d.devices[espID]
	if q == nil {
		if len(d.devices) >= d.cfg.MaxDevices {
			return nil, errors.New("too many devices with queued work")
		}
		q = &deviceQueue{id: espID, limit: d.cfg.QueueCapacity}
		if n := len(d.spareRings); n > 0 {
			q.buf = d.spareRings[n-1]
			d.spareRings = d.spareRings[:n-1]
		}
		d.devices[q.id] = q
	}
	return q, nil
}

// maxSpareRings bounds the spare rings: as many as queues empty between
// two arrivals in a busy fleet, a few tens of KB.
const maxSpareRings = 64

// spareLocked keeps the ring of q, which emptied and left the map, for the
// next queue; grown rings go with their queue (a queue that grew was busy,
// and a spare of that size would be held for nothing). pop cleared every
// slot. d.mu is held.
func (d *Dispatcher) spareLocked(q *deviceQueue) {
	if len(q.buf) == minQueueSlots && len(d.spareRings) < maxSpareRings {
		d.spareRings = append(d.spareRings, q.buf)
	}
	q.buf = nil
}

// pushLocked queues m on q and schedules q; d.mu is held.
func (d *Dispatcher) pushLocked(q *deviceQueue, m Message) {
	q.push(m)
	d.pending++
	if !q.scheduled {
		q.scheduled = true
		d.ready <- q // capacity MaxDevices ≥ number of queues: never blocks
	}
}

func (d *Dispatcher) worker(s *slot) {
	defer d.wg.Done()
	defer func() {
		d.slotsMu.Lock()
		delete(d.slots, s)
		d.slotsMu.Unlock()
	}()
	for {
		select {
		case q := <-d.ready:
			d.process(s, q)
			if s.detached.Load() {
				return // a replacement took this worker's place
			}
		case <-d.quit:
			return
		}
	}
}

func (d *Dispatcher) process(s *slot, q *deviceQueue) {
	d.mu.Lock()
	wasFull := q.full()
	space := q.space
	m := q.pop()
	d.mu.Unlock()
	if wasFull && space != nil {
		select {
		case space <- struct{}{}:
		default:
		}
	}
	s.device.Store(q.id)
	s.started.Store(int64(d.elapsed()) + 1)
	d.run(m)
	s.started.Store(0)

	d.mu.Lock()
	d.pending--
	if q.n > 0 {
		d.ready <- q // round-robin: one message per turn keeps devices fair
	} else {
		q.scheduled = false
		delete(d.devices, q.id)
		d.spareLocked(q)
	}
	if d.closing && d.pending == 0 {
		d.signalDrained()
	}
	d.mu.Unlock()
}

// run executes the handler with a deadline, recovering panics.
func (d *Dispatcher) run(m Message) {
	h := d.handlers[m.Topic.Kind]
	if h == nil {
		d.handled(m)
		d.settle(m, "")
		return
	}
	ctx, cancel := context.WithTimeout(d.baseCtx, d.cfg.HandlerTimeout)
	defer cancel()
	if m.settle != nil {
		// Every write the handler queues reports its commit to the waiting publisher.
		ctx = store.WithCommits(ctx, m.settle.commits)
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &panicError{value: r, stack: debug.Stack()}
			}
		}()
		return h(ctx, m)
	}()
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		d.log.Error("handler panic",
			"esp_id", m.Topic.EspID,
			"kind", m.Topic.Kind,
			"panic", fmt.Sprint(pe.value),
			"stack", string(pe.stack))
		d.drop(m, contract.ReasonHandlerPanic, err)
		d.settle(m, contract.ReasonHandlerPanic)
	case ctx.Err() == context.DeadlineExceeded:
		d.drop(m, contract.ReasonHandlerTimeout, fmt.Errorf("handler exceeded %s: %v", d.cfg.HandlerTimeout, err))
		d.settle(m, contract.ReasonHandlerTimeout)
	case err != nil:
		reason := reasonOf(err)
		d.drop(m, reason, err)
		d.settle(m, reason)
	default:
		d.handled(m)
		d.settle(m, "")
	}
}

// settle tells a waiting publisher the handler's verdict; the commits of
// what the handler queued follow on their own.
func (d *Dispatcher) settle(m Message, reason string) {
	if m.settle == nil {
		return
	}
	m.settle.commits.Seal()
	m.settle.verdict <- reason
}

type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// watchdog detaches workers whose handler ignores its cancelled deadline, so a
// stuck device holds one goroutine, never a share of the pool. The stuck
// device keeps its queue (order is preserved) until its handler returns.
func (d *Dispatcher) watchdog() {
	defer d.wg.Done()
	period := d.cfg.HandlerTimeout / 4
	if period < 10*time.Millisecond {
		period = 10 * time.Millisecond
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	limit := d.cfg.HandlerTimeout + period
	for {
		select {
		case <-d.quit:
			return
		case <-tick.C:
		}
		now := int64(d.elapsed()) + 1
		var stuck []*slot
		d.slotsMu.Lock()
		for s := range d.slots {
			if st := s.started.Load(); st != 0 && !s.detached.Load() && time.Duration(now-st) > limit {
				stuck = append(stuck, s)
			}
		}
		d.slotsMu.Unlock()
		for _, s := range stuck {
			s.detached.Store(true)
			d.log.Error("handler ignores its deadline; worker detached and replaced", "esp_id", s.device.Load(), "after", limit)
			if d.metrics != nil {
				d.metrics.Detached.Inc()
			}
			d.startWorker()
		}
	}
}

// elapsed is the time since the dispatcher was built, on the monotonic
// clock, which no wall-clock step moves.
func (d *Dispatcher) elapsed() time.Duration { return time.Since(d.epoch) }

func (d *Dispatcher) signalDrained() {
	select {
	case <-d.drained:
	default:
		close(d.drained)
	}
}

// Stop processes every queued message, then stops the workers. Producers must
// have stopped (the broker no longer accepts PUBLISH) before Stop is called.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	if d.pending == 0 {
		d.signalDrained()
	}
	d.mu.Unlock()
	var err error
	select {
	case <-d.drained:
	case <-ctx.Done():
		err = fmt.Errorf("ingest drain: %d messages unprocessed: %w", d.Pending(), ctx.Err())
	}
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.cancel()
	close(d.quit)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("ingest workers did not stop: %w", ctx.Err())
		}
	}
	return err
}

// Pending is the number of queued and in-flight messages.
func (d *Dispatcher) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

func (d *Dispatcher) handled(m Message) {
	d.counters.processed(m.Topic.EspID)
	if d.metrics != nil {
		d.metrics.Handled.WithLabelValues(string(m.Topic.Kind)).Inc()
		d.metrics.Latency.WithLabelValues(string(m.Topic.Kind)).Observe(d.now().Sub(m.ReceivedAt).Seconds())
	}
}

// count records a non-error outcome that is not "handled" (empty payloads).
func (d *Dispatcher) count(m Message, reason string) {
	d.counters.dropped(m.Topic.EspID, reason)
	d.drops.add(reason)
	if d.metrics != nil {
		d.metrics.Dropped.WithLabelValues(string(m.Topic.Kind), reason).Inc()
	}
}

func (d *Dispatcher) drop(m Message, reason string, err error) {
	d.count(m, reason)
	if reason == contract.ReasonReplay || reason == contract.ReasonEmpty {
		return
	}
	if d.logLim.allow(reason) {
		d.log.Warn("message dropped",
			"reason", reason,
			"topic", clip(m.RawTopic, maxLoggedText),
			"esp_id", m.Topic.EspID,
			"error", clip(fmt.Sprint(err), maxLoggedText),
			"payload", clip(string(m.Payload), maxLoggedPayload))
	}
}

// Bounds of a drop's log line: the topic and the error text (which can
// quote the payload) come from the network (docs/protocol.md §5.2: the first
// 200 payload bytes).
const (
	maxLoggedPayload = 200
	maxLoggedText    = 256
)

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func reasonOf(err error) string {
	var r dropReasoner
	if errors.As(err, &r) {
		return r.DropReason()
	}
	return contract.ReasonHandlerError
}

// Counters are a device's in-memory ingest counters since start (docs/protocol.md §5.2).
type Counters struct {
	Received  int64            `json:"received"`
	Processed int64            `json:"processed"`
	Replays   int64            `json:"replays"`
	Dropped   map[string]int64 `json:"dropped"`
}

// DeviceCounters returns a copy of a device's counters.
func (d *Dispatcher) DeviceCounters(espID string) Counters { return d.counters.get(espID) }

type deviceCounters struct {
	mu    sync.Mutex
	max   int
	byDev map[string]*Counters
}

func newDeviceCounters(max int) *deviceCounters {
	return &deviceCounters{max: max, byDev: map[string]*Counters{}}
}

// entry returns the counters of id; past the bound, unknown ids share one
// overflow entry so memory stays bounded whatever devices send.
func (c *deviceCounters) entry(id string) *Counters {
	e := c.byDev[id]
	if e == nil {
		if len(c.byDev) >= c.max {
			id = "_overflow"
			if e = c.byDev[id]; e != nil {
				return e
			}
		}
		e = &Counters{Dropped: map[string]int64{}}
		c.byDev[id] = e
	}
	return e
}

func (c *deviceCounters) received(id string, replay bool) {
	c.mu.Lock()
	e := c.entry(id)
	e.Received++
	if replay {
		e.Replays++
	}
	c.mu.Unlock()
}

func (c *deviceCounters) processed(id string) {
	c.mu.Lock()
	c.entry(id).Processed++
	c.mu.Unlock()
}

func (c *deviceCounters) dropped(id, reason string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	c.entry(id).Dropped[reason]++
	c.mu.Unlock()
}

func (c *deviceCounters) get(id string) Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byDev[id]
	out := Counters{Dropped: map[string]int64{}}
	if e == nil {
		return out
	}
	out.Received, out.Processed, out.Replays = e.Received, e.Processed, e.Replays
	for k, v := range e.Dropped {
		out.Dropped[k] = v
	}
	return out
}

// logLimiter lets one drop log line per reason through per period.
type logLimiter struct {
	mu     sync.Mutex
	period time.Duration
	last   map[string]time.Time
}

func newLogLimiter(p time.Duration) *logLimiter {
	return &logLimiter{period: p, last: map[string]time.Time{}}
}

func (l *logLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last[key]) < l.period {
		return false
	}
	l.last[key] = now
	return true
}

// Metrics are the dispatcher's Prometheus instruments.
type Metrics struct {
	Received *prometheus.CounterVec
	Handled  *prometheus.CounterVec
	Dropped  *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
	Detached prometheus.Counter
}

// NewMetrics registers the ingest metrics; depth reports queued messages.
func NewMetrics(reg prometheus.Registerer, depth func() float64) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "god_kaiser_mqtt_messages_received_total",
			Help: "Device messages received, by kind."}, []string{"kind"}),
		Handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_ingest_messages_handled_total",
			Help: "Device messages handled successfully, by kind."}, []string{"kind"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_ingest_messages_dropped_total",
			Help: "Device messages dropped, by kind and reason (docs/protocol.md §5.2)."}, []string{"kind", "reason"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kaiser_ingest_handler_seconds",
			Help:    "Time from receipt to handled, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"kind"}),
		Detached: prometheus.NewCounter(prometheus.CounterOpts{Name: "kaiser_ingest_workers_detached_total",
			Help: "Workers replaced because their handler ignored its deadline."}),
	}
	reg.MustRegister(m.Received, m.Handled, m.Dropped, m.Latency, m.Detached)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kaiser_ingest_queue_depth",
		Help: "Messages queued or in flight in the ingest pipeline."}, depth))
	return m
}

// Totals returns the messages received since start and when the last arrived.
func (d *Dispatcher) Totals() (int64, time.Time) {
	n := d.totalReceived.Load()
	last := d.lastReceived.Load()
	if last == 0 {
		return n, time.Time{}
	}
	return n, time.Unix(0, last)
}
