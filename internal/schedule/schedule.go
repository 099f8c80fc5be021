// Package schedule is the hub's central scheduler (docs/domain.md §9): named jobs
// on an interval or a cron expression that never overlap themselves, whose
// missed runs coalesce into one, that skip a run more than 30 s late, and
// that keep per-job statistics and can be triggered by hand.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
)

// Job is one periodic task.
type Job struct {
	Name string
	// Every runs the job at this interval; Cron (5 fields) is used instead when set.
	Every time.Duration
	Cron  string
	// Timeout bounds one run (default: the interval, at most 5 min).
	Timeout time.Duration
	Run     func(ctx context.Context) error
}

// Stats are a job's counters (docs/domain.md §9: last_run, next_run, last_result).
type Stats struct {
	Name         string        `json:"name"`
	Runs         int64         `json:"runs"`
	Errors       int64         `json:"errors"`
	Skipped      int64         `json:"skipped"`
	Running      bool          `json:"running"`
	LastRun      time.Time     `json:"last_run"`
	LastDuration time.Duration `json:"last_duration_ns"`
	LastResult   string        `json:"last_result"`
	NextRun      time.Time     `json:"next_run"`
}

// MaxLateness is how late a run may start before it is skipped.
const MaxLateness = 30 * time.Second

type job struct {
	Job
	sched   cron.Schedule
	trigger chan struct{}
	mu      sync.Mutex
	stats   Stats
}

// Scheduler runs jobs; it is safe for concurrent use.
type Scheduler struct {
	log     *slog.Logger
	loc     *time.Location
	mu      sync.Mutex
	jobs    map[string]*job
	started bool
	ctx     context.Context // the loops' context, kept so a job added after Start gets its loop too
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	now     func() time.Time

	runs     *prometheus.CounterVec
	errs     *prometheus.CounterVec
	duration *prometheus.GaugeVec
	next     *prometheus.GaugeVec
}

// New returns a scheduler; cron times use loc (nil = UTC).
func New(log *slog.Logger, loc *time.Location, reg prometheus.Registerer) *Scheduler {
	if log == nil {
		log = slog.Default()
	}
	if loc == nil {
		loc = time.UTC
	}
	s := &Scheduler{
		log:  log,
		loc:  loc,
		jobs: map[string]*job{},
		now:  time.Now,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_scheduler_job_runs_total",
			Help: "Scheduled job runs."}, []string{"job"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaiser_scheduler_job_errors_total",
			Help: "Scheduled job runs that failed."}, []string{"job"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kaiser_scheduler_job_last_duration_seconds",
			Help: "Duration of each job's last run."}, []string{"job"}),
		next: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kaiser_scheduler_job_next_run_timestamp_seconds",
			Help: "Unix time of each job's next run."}, []string{"job"}),
	}
	if reg != nil {
		reg.MustRegister(s.runs, s.errs, s.duration, s.next)
	}
	return s
}

type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// Add registers a job; it starts with the scheduler (or at once if running).
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" || j.Run == nil {
		return errors.New("job needs a name and a run function")
	}
	var sched cron.Schedule
	switch {
	case j.Cron != "":
		c, err := cron.ParseStandard(j.Cron)
		if err != nil {
			return fmt.Errorf("job %s: cron %q: %w", j.Name, j.Cron, err)
		}
		sched = c
	case j.Every > 0:
		sched = every(j.Every)
	default:
		return fmt.Errorf("job %s: needs Every or Cron", j.Name)
	}
	if j.Timeout <= 0 {
		j.Timeout = 5 * time.Minute
		if j.Every > 0 && j.Every < j.Timeout {
			j.Timeout = j.Every
		}
	}
	jb := &job{Job: j, sched: sched, trigger: make(chan struct{}, 1)}
	jb.stats.Name = j.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("job %s already registered", j.Name)
	}
	s.jobs[j.Name] = jb
	if s.started {
		s.wg.Add(1)
		go s.loop(s.ctx, jb)
	}
	return nil
}

// Start launches every job loop.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.cancel = context.WithCancel(ctx)
	ctx = s.ctx
	s.started = true
	for _, j := range s.jobs {
		s.wg.Add(1)
		go s.loop(ctx, j)
	}
}

// Stop ends the loops and waits for running jobs (their context is cancelled).
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler stop: %w", ctx.Err())
	}
}

// Trigger runs a job now (once; a trigger during a run coalesces).
func (s *Scheduler) Trigger(name string) error {
	s.mu.Lock()
	j := s.jobs[name]
	s.mu.Unlock()
	if j == nil {
		return fmt.Errorf("unknown job %q", name)
	}
	select {
	case j.trigger <- struct{}{}:
	default:
	}
	return nil
}

// Stats returns every job's statistics, by name.
func (s *Scheduler) Stats() []Stats {
	s.mu.Lock()
	out := make([]Stats, 0, len(s.jobs))
	for _, j := range s.jobs {
		j.mu.Lock()
		out = append(out, j.stats)
		j.mu.Unlock()
	}
	s.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Schedule is how a job is scheduled: at an interval or by a cron
// expression, each run bounded by Timeout.
type Schedule struct {
	Name    string
	Every   time.Duration
	Cron    string
	Timeout time.Duration
}

// Schedules returns every job's schedule, by name.
func (s *Scheduler) Schedules() []Schedule {
	s.mu.Lock()
	out := make([]Schedule, 0, len(s.jobs))
	for _, j := range s.jobs {
		sc := Schedule{Name: j.Name, Cron: j.Cron, Timeout: j.Timeout}
		if j.Cron == "" {
			sc.Every = j.Every
		}
		out = append(out, sc)
	}
	s.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Location is the time zone cron expressions are read in.
func (s *Scheduler) Location() *time.Location { return s.loc }

func (s *Scheduler) loop(ctx context.Context, j *job) {
	defer s.wg.Done()
	next := j.sched.Next(s.now().In(s.loc))
	for {
		j.mu.Lock()
		j.stats.NextRun = next
		j.mu.Unlock()
		s.next.WithLabelValues(j.Name).Set(float64(next.Unix()))
		// The wait is measured on the scheduler's clock, the one next and
		// the lateness check below are read from.
		timer := time.NewTimer(next.Sub(s.now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-j.trigger:
			timer.Stop()
			s.run(ctx, j)
		case <-timer.C:
			if late := s.now().Sub(next); late > MaxLateness {
				j.mu.Lock()
				j.stats.Skipped++
				j.mu.Unlock()
				s.log.Warn("scheduled run skipped: too late", "job", j.Name, "late", late)
			} else {
				s.run(ctx, j)
			}
		}
		// Computing the next run from now coalesces runs missed meanwhile.
		next = j.sched.Next(s.now().In(s.loc))
	}
}

// run executes one run synchronously in the job's own loop, so a job can
// never overlap itself.
func (s *Scheduler) run(ctx context.Context, j *job) {
	start := s.now()
	j.mu.Lock()
	j.stats.Running = true
	j.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, j.Timeout)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("job panic: %v", r)
			}
		}()
		return j.Run(rctx)
	}()
	cancel()
	d := s.now().Sub(start)
	j.mu.Lock()
	j.stats.Running = false
	j.stats.Runs++
	j.stats.LastRun = start
	j.stats.LastDuration = d
	j.stats.LastResult = "success"
	if err != nil {
		j.stats.Errors++
		j.stats.LastResult = err.Error()
	}
	j.mu.Unlock()
	s.runs.WithLabelValues(j.Name).Inc()
	s.duration.WithLabelValues(j.Name).Set(d.Seconds())
	if err != nil {
		s.errs.WithLabelValues(j.Name).Inc()
		s.log.Error("scheduled job failed", "job", j.Name, "error", err)
	}
}
