// Package sequence runs the sequence actions of docs/domain.md §6.5: a
// rule's step list in the background, step by step with its delays,
// per-attempt timeouts and retries, its progress persisted at every step so
// that a restart resumes it, and the cleanup OFFs when it fails, times out
// or is cancelled (by REST, an emergency stop or a restart). It implements
// the rule engine's Sequencer and keeps the progress the API shows.
package sequence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/rule"
	"github.com/kaiserhub/kaiser/internal/store"
)

// Statuses of docs/domain.md §6.5.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusTimeout   = "timeout"
)

// Limits of docs/domain.md §6.5.
const (
	// MaxRunning is how many sequences may be pending or running at once.
	MaxRunning = 20
	// Retention is how long a finished sequence's progress is kept.
	Retention = time.Hour
	// SweepEvery is the period of the retention sweep.
	SweepEvery = 5 * time.Minute
	// maxLate is how late a sequence found at start may pick up its wait or
	// attempt; one left for longer is cancelled with its cleanup OFFs, like a
	// delay continuation (docs/decisions/0010-rules.md).
	maxLate = time.Minute
)

// Codes of a refused start (docs/api.md §11) and of a sequence's or step's
// failure; a step's code is otherwise the action's (an actuator rejection
// code, command_timeout, delivery_failed, …).
const (
	CodeLimitExceeded = "LIMIT_EXCEEDED"
	CodeDuplicate     = "DUPLICATE"

	codeStepTimeout   = "step_timeout"
	codeRateLimited   = "rate_limited"
	codeCommandError  = "command_error"
	codeCommandFailed = "command_failed"
	codeTimedOut      = "command_timeout"
	codeExpired       = "command_expired"
	codeTimeout       = "timeout"
	codeCancelled     = "cancelled"
	codeInterrupted   = "hub_restart"
	codeDelivery      = "delivery_failed"
)

// Error is a refused start with its code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode is the code the rule's action result records.
func (e *Error) ErrorCode() string { return e.Code }

// Errors of the progress operations.
var (
	ErrNotFound     = errors.New("sequence not found")
	ErrInvalidState = errors.New("the sequence is neither pending nor running")
	errStopping     = errors.New("the hub is stopping")
	errTimeout      = errors.New("max_duration_seconds reached")
)

// Store keeps the progress.
type Store interface {
	SaveSequence(ctx context.Context, q store.Sequence) error
	LoadSequences(ctx context.Context) ([]store.Sequence, error)
	DeleteSequencesFinishedBefore(ctx context.Context, t time.Time) (int, error)
}

// Actuators issues the steps' commands through the normal command path
// (docs/domain.md §4.4) and the cleanup OFFs.
type Actuators interface {
	Command(ctx context.Context, req actuator.Request) (actuator.Result, error)
	Off(ctx context.Context, r actuator.OffRequest) (actuator.Result, error)
	CommandByID(ctx context.Context, id string) (store.ActuatorCommand, error)
}

// Engine is what the rule engine lends the steps: its notification
// channels and the per-device token buckets (docs/domain.md §6.9).
type Engine interface {
	Deliver(ctx context.Context, r *rule.Rule, n *rule.Notification, trig rule.Trigger, metadata map[string]any) (string, error)
	AdmitStep(espID string) bool
}

// Pauses tells devices whose rules must not switch on after an emergency
// stop (docs/domain.md §5.4).
type Pauses interface {
	RulesPaused(espID string) bool
}

var _ Actuators = (*actuator.Service)(nil)

// Deps are the runner's collaborators.
type Deps struct {
	Store     Store
	Actuators Actuators
	Engine    Engine
	Pauses    Pauses // nil: nothing is paused
	Events    *event.Bus
}

// Options tunes the runner.
type Options struct {
	// Second is the length of one second of the steps' delays, timeouts and
	// max_duration_seconds (tests shorten it, like the actuator timings).
	Second time.Duration
	Logger *slog.Logger
}

// Service runs the sequences. It is safe for concurrent use.
type Service struct {
	d      Deps
	log    *slog.Logger
	second time.Duration

	mu      sync.Mutex
	runs    map[string]*run // by sequence id: running and finished ones
	waiting map[string]chan string
	stopped bool
	sub     *event.Subscription

	stop chan struct{}
	wg   sync.WaitGroup
}

// New builds the runner; call Load, then Resume.
func New(d Deps, opt Options) *Service {
	if opt.Second <= 0 {
		opt.Second = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Service{
		d:       d,
		log:     opt.Logger,
		second:  opt.Second,
		runs:    map[string]*run{},
		waiting: map[string]chan string{},
		stop:    make(chan struct{}),
	}
}

func (s *Service) secs(n float64) time.Duration { return time.Duration(n * float64(s.second)) }

// Load reads the kept progress: finished sequences for the API, running
// ones for Resume.
func (s *Service) Load(ctx context.Context) error {
	rows, err := s.d.Store.LoadSequences(ctx)
	if err != nil {
		return fmt.Errorf("load sequences: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, row := range rows {
		st, err := decodeState(row.Doc)
		if err != nil {
			s.log.Error("stored sequence does not decode; dropped from the view", "sequence_id", row.ID, "error", err)
			continue
		}
		s.runs[row.ID] = &run{st: st}
	}
	return nil
}

// Resume follows the command outcomes and emergency stops, then picks up
// the sequences found running at start (docs/domain.md §4.8): a wait or an
// attempt that is due at most a minute ago goes on, an older one ends
// cancelled (hub_restart) with its cleanup OFFs.
func (s *Service) Resume() {
	s.sub = s.d.Events.Subscribe(1024, event.TypeCommandStatus, event.TypeEmergency)
	s.wg.Add(1)
	go s.follow()
	now := time.Now()
	for _, rn := range s.active() {
		rn.mu.Lock()
		due := rn.st.due()
		rn.mu.Unlock()
		if now.Sub(due) > maxLate {
			s.end(context.Background(), rn, &cancelled{reason: codeInterrupted, by: "system:hub_restart"})
			continue
		}
		s.launch(rn)
	}
}

// Stop ends the runs without finishing them, so that the next start finds
// them running, and waits for them.
func (s *Service) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	close(s.stop)
	runs := s.activeLocked()
	s.mu.Unlock()
	for _, rn := range runs {
		rn.mu.Lock()
		if rn.cancel != nil {
			rn.cancel(errStopping)
		}
		rn.mu.Unlock()
	}
	s.wg.Wait()
}

// follow hands command outcomes to the attempts waiting for them and
// cancels the sequences an emergency stop concerns.
func (s *Service) follow() {
	defer s.wg.Done()
	defer s.d.Events.Unsubscribe(s.sub)
	for {
		select {
		case <-s.stop:
			return
		case e := <-s.sub.C:
			switch d := e.Data.(type) {
			case event.CommandStatus:
				s.settle(d.CommandID, d.Status)
			case event.Emergency:
				if d.Action == "stop" {
					espID := ""
					if d.EspID != nil {
						espID = *d.EspID
					}
					s.emergencyStop(espID, d.IssuedBy)
				}
			}
		}
	}
}

// emergencyStop cancels the sequences with a step or a switched-on
// actuator on the stopped device, every one for a global stop
// (docs/domain.md §5.2 step 2); the latch already blocks their non-OFF
// commands.
func (s *Service) emergencyStop(espID, by string) {
	for _, rn := range s.active() {
		rn.mu.Lock()
		hit := espID == "" || rn.st.touches(espID)
		cancel := rn.cancel
		rn.mu.Unlock()
		if hit && cancel != nil {
			cancel(&cancelled{reason: "emergency_stop", by: by})
		}
	}
}

// active lists the pending and running sequences.
func (s *Service) active() []*run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeLocked()
}

func (s *Service) activeLocked() []*run {
	var out []*run
	for _, rn := range s.runs {
		if rn.active() {
			out = append(out, rn)
		}
	}
	return out
}

// Start starts a rule's sequence action in the background and returns its
// id once its progress is stored (the engine's Sequencer). It refuses a
// 21st sequence (LIMIT_EXCEEDED) and an id that is running (DUPLICATE).
func (s *Service) Start(ctx context.Context, r *rule.Rule, q *rule.Sequence, trig rule.Trigger) (string, error) {
	now := time.Now()
	rn := &run{st: newState(r, q, trig, now, s.secs(float64(q.MaxDurationSeconds)))}
	id := rn.st.Progress.SequenceID
	s.mu.Lock()
	if err := s.refusalLocked(id); err != nil {
		s.mu.Unlock()
		return "", err
	}
	s.runs[id] = rn // reserved: a concurrent start sees it
	s.mu.Unlock()
	if err := s.save(ctx, rn); err != nil {
		s.mu.Lock()
		delete(s.runs, id)
		s.mu.Unlock()
		return "", fmt.Errorf("store the sequence: %w", err)
	}
	s.launch(rn)
	return id, nil
}

// CanStart tells why Start would refuse q now, changing nothing.
func (s *Service) CanStart(r *rule.Rule, q *rule.Sequence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusalLocked(sequenceID(r, q, time.Now()))
}

func (s *Service) refusalLocked(id string) error {
	switch {
	case s.stopped:
		return &Error{Code: "hub_stopping", Message: "the hub is stopping"}
	case len(s.activeLocked()) >= MaxRunning:
		return &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("%d sequences are running (the limit)", MaxRunning)}
	case s.runs[id] != nil && s.runs[id].active():
		return &Error{Code: CodeDuplicate, Message: "sequence " + id + " is running"}
	}
	return nil
}

// launch runs rn on its own goroutine until it ends or the hub stops.
func (s *Service) launch(rn *run) {
	ctx, cancel := context.WithCancelCause(context.Background())
	rn.mu.Lock()
	deadline := rn.st.Deadline
	rn.cancel = cancel
	rn.done = make(chan struct{})
	done := rn.done
	rn.mu.Unlock()
	ctx, stopDeadline := context.WithDeadlineCause(ctx, deadline, errTimeout)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer stopDeadline()
		s.execute(ctx, rn)
	}()
}

// Cancel cancels a pending or running sequence (docs/api.md §11) and
// returns its progress once the cancellation and its cleanup OFFs are
// stored.
func (s *Service) Cancel(ctx context.Context, id, reason, by string) (Progress, error) {
	s.mu.Lock()
	rn := s.runs[id]
	s.mu.Unlock()
	if rn == nil {
		return Progress{}, ErrNotFound
	}
	rn.mu.Lock()
	cancel, done := rn.cancel, rn.done
	live := rn.st.active() && cancel != nil
	rn.mu.Unlock()
	if !live {
		return Progress{}, ErrInvalidState
	}
	cancel(&cancelled{reason: reason, by: by})
	select {
	case <-done:
	case <-ctx.Done():
		return Progress{}, ctx.Err()
	}
	p := rn.progress()
	if p.Status != StatusCancelled {
		return p, ErrInvalidState // it ended on its own meanwhile
	}
	return p, nil
}

// cancelled is the cause of a cancellation.
type cancelled struct{ reason, by string }

func (c *cancelled) Error() string { return "cancelled: " + c.reason }

// save stores rn's progress and waits for the commit.
func (s *Service) save(ctx context.Context, rn *run) error {
	rn.mu.Lock()
	row, err := rn.st.row()
	rn.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.d.Store.SaveSequence(context.WithoutCancel(ctx), row); err != nil {
		s.log.Error("sequence progress not stored", "sequence_id", row.ID, "error", err)
		return err
	}
	return nil
}

// awaitOutcome registers for command id's terminal state.
func (s *Service) awaitOutcome(id string) chan string {
	ch := make(chan string, 1)
	s.mu.Lock()
	s.waiting[id] = ch
	s.mu.Unlock()
	return ch
}

func (s *Service) forget(id string) {
	s.mu.Lock()
	delete(s.waiting, id)
	s.mu.Unlock()
}

// settle passes a terminal command state to its waiting attempt.
func (s *Service) settle(id, status string) {
	if !terminal(status) {
		return
	}
	s.mu.Lock()
	ch := s.waiting[id]
	delete(s.waiting, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- status
	}
}

func terminal(status string) bool {
	return slices.Contains([]string{actuator.StatusAcknowledged, actuator.StatusFailed, actuator.StatusTimeout,
		actuator.StatusExpired}, status)
}
