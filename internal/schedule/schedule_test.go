package schedule

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tests run in synctest bubbles: time only moves when every goroutine of
// the bubble is blocked, so a sleep below is a step of the fake clock, and
// synctest.Wait lets the job loops settle before anything is asserted.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func nop(context.Context) error { return nil }

// stop ends the scheduler at the end of a bubble, so no loop outlives it.
func stop(t *testing.T, s *Scheduler) {
	t.Helper()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func statsOf(t *testing.T, s *Scheduler, name string) Stats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no stats for job %s", name)
	return Stats{}
}

func TestJobsNeverOverlapAndMissedRunsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, prometheus.NewRegistry())
		var running, maxRunning, runs atomic.Int32
		release := make(chan struct{})
		slow := func(ctx context.Context) error {
			n := running.Add(1)
			defer running.Add(-1)
			if n > maxRunning.Load() {
				maxRunning.Store(n)
			}
			if runs.Add(1) == 1 {
				<-release // the first run outlasts many intervals
			}
			return nil
		}
		err := s.Add(Job{
			Name:    "slow",
			Every:   time.Minute,
			Timeout: time.Hour,
			Run:     slow,
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s.Start(context.Background())
		defer stop(t, s)

		time.Sleep(time.Minute)
		synctest.Wait()
		if runs.Load() != 1 || !statsOf(t, s, "slow").Running {
			t.Fatalf("after one interval: %d runs, stats %+v; want the first run in progress", runs.Load(),
				statsOf(t, s, "slow"))
		}

		for range 20 {
			if err := s.Trigger("slow"); err != nil { // triggers during the run coalesce into one
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Minute)
		close(release)
		synctest.Wait()

		// Ten missed intervals and twenty triggers give one extra run, not a burst.
		if runs.Load() != 2 {
			t.Fatalf("%d runs right after the long one, want 2", runs.Load())
		}
		st := statsOf(t, s, "slow")
		if st.Running || st.LastDuration != 0 || !st.NextRun.Equal(start.Add(12*time.Minute)) {
			t.Fatalf("stats after the coalesced run %+v; next run want %v", st, start.Add(12*time.Minute))
		}

		// The schedule resumes at the interval: runs at 12, 13, ... 19 minutes.
		time.Sleep(8*time.Minute + 30*time.Second)
		synctest.Wait()
		if runs.Load() != 10 {
			t.Fatalf("%d runs after 19.5 minutes, want 10", runs.Load())
		}
		if maxRunning.Load() != 1 {
			t.Fatalf("job overlapped itself: %d concurrent runs", maxRunning.Load())
		}
	})
}

func TestStats(t *testing.T) {
	tests := []struct {
		name       string
		run        func(ctx context.Context) error
		timeout    time.Duration
		wantErrors int64
		wantResult string
		wantTook   time.Duration
	}{
		{
			name:       "success",
			run:        func(context.Context) error { time.Sleep(3 * time.Second); return nil },
			wantResult: "success",
			wantTook:   3 * time.Second,
		},
		{
			name:       "failure",
			run:        func(context.Context) error { time.Sleep(time.Second); return errors.New("disk full") },
			wantErrors: 1,
			wantResult: "disk full",
			wantTook:   time.Second,
		},
		{
			name:       "panic",
			run:        func(context.Context) error { panic("bad state") },
			wantErrors: 1,
			wantResult: "job panic: bad state",
		},
		{
			name:       "timeout",
			run:        func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			timeout:    20 * time.Second,
			wantErrors: 1,
			wantResult: context.DeadlineExceeded.Error(),
			wantTook:   20 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				s := New(quiet, nil, reg)
				err := s.Add(Job{
					Name:    "job",
					Every:   time.Minute,
					Timeout: tt.timeout,
					Run:     tt.run,
				})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				s.Start(context.Background())
				defer stop(t, s)

				synctest.Wait()
				before := statsOf(t, s, "job")
				if before.Runs != 0 || !before.LastRun.IsZero() || before.LastResult != "" ||
					!before.NextRun.Equal(start.Add(time.Minute)) {
					t.Fatalf("stats before the first run %+v", before)
				}

				time.Sleep(time.Minute)
				synctest.Wait()
				if tt.wantTook > 0 && !statsOf(t, s, "job").Running {
					t.Fatal("stats do not show the run in progress")
				}
				time.Sleep(tt.wantTook)
				synctest.Wait()
				st := statsOf(t, s, "job")
				ranAt := start.Add(time.Minute)
				if st.Runs != 1 || st.Errors != tt.wantErrors || st.LastResult != tt.wantResult {
					t.Fatalf("runs %d errors %d result %q; want 1, %d, %q", st.Runs, st.Errors, st.LastResult,
						tt.wantErrors, tt.wantResult)
				}
				if !st.LastRun.Equal(ranAt) || st.LastDuration != tt.wantTook || st.Running || st.Skipped != 0 {
					t.Fatalf("stats %+v: want last run %v taking %v", st, ranAt, tt.wantTook)
				}
				if !st.NextRun.Equal(ranAt.Add(tt.wantTook + time.Minute)) {
					t.Fatalf("next run %v, want an interval after the run ended", st.NextRun)
				}

				m := metrics(t, reg, "job")
				if m["kaiser_scheduler_job_runs_total"] != 1 ||
					m["kaiser_scheduler_job_errors_total"] != float64(tt.wantErrors) ||
					m["kaiser_scheduler_job_last_duration_seconds"] != tt.wantTook.Seconds() ||
					m["kaiser_scheduler_job_next_run_timestamp_seconds"] != float64(st.NextRun.Unix()) {
					t.Fatalf("metrics %v disagree with stats %+v", m, st)
				}
			})
		})
	}
}

// metrics returns the job's metric values by name.
func metrics(t *testing.T, reg *prometheus.Registry, job string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != job {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestStatsAccumulateAndAreSortedByName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, nil)
		var n atomic.Int32
		// Every third run fails.
		flaky := func(context.Context) error {
			if n.Add(1)%3 == 0 {
				return errors.New("flaky")
			}
			return nil
		}
		for _, j := range []Job{
			{Name: "zeta", Every: time.Minute, Run: flaky},
			{Name: "alpha", Every: time.Hour, Run: nop},
		} {
			if err := s.Add(j); err != nil {
				t.Fatal(err)
			}
		}
		s.Start(context.Background())
		defer stop(t, s)

		time.Sleep(7*time.Minute + time.Second)
		synctest.Wait()

		st := s.Stats()
		if len(st) != 2 || st[0].Name != "alpha" || st[1].Name != "zeta" {
			t.Fatalf("stats %+v, want alpha then zeta", st)
		}
		if st[0].Runs != 0 || st[1].Runs != 7 || st[1].Errors != 2 || st[1].LastResult != "success" {
			t.Fatalf("stats %+v: want alpha not run yet, zeta 7 runs with 2 errors, the last one fine", st)
		}
	})
}

func TestLateRunIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, nil)
		// jump shifts the scheduler's wall clock against the timers, as a
		// suspended machine or a clock step does.
		var jump atomic.Int64
		s.now = func() time.Time { return time.Now().Add(time.Duration(jump.Load())) }
		var runs atomic.Int32
		if err := s.Add(Job{Name: "job", Every: time.Minute, Run: func(context.Context) error {
			runs.Add(1)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		s.Start(context.Background())
		defer stop(t, s)
		synctest.Wait()

		// Every step waits one interval; jump moves the wall clock by its
		// amount meanwhile, so the run is that late.
		steps := []struct {
			name        string
			jump        time.Duration
			wantRuns    int32
			wantSkipped int64
		}{
			{
				name:        "late inside the limit",
				jump:        MaxLateness,
				wantRuns:    1,
				wantSkipped: 0,
			},
			{
				name:        "later than the limit",
				jump:        MaxLateness + time.Second,
				wantRuns:    1,
				wantSkipped: 1,
			},
			{
				name:        "on time",
				jump:        0,
				wantRuns:    2,
				wantSkipped: 1,
			},
			{
				name:        "clock stepped back",
				jump:        -5 * time.Minute,
				wantRuns:    3,
				wantSkipped: 1,
			},
		}
		for _, step := range steps {
			jump.Add(int64(step.jump))
			time.Sleep(time.Minute)
			synctest.Wait()

			st := statsOf(t, s, "job")
			if runs.Load() != step.wantRuns || st.Skipped != step.wantSkipped || st.Runs != int64(step.wantRuns) {
				t.Fatalf("%s: %d runs, stats %+v; want %d runs, %d skipped", step.name, runs.Load(), st,
					step.wantRuns, step.wantSkipped)
			}
		}
	})
}

func TestTriggerRunsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, nil)
		var runs atomic.Int32
		if err := s.Add(Job{Name: "daily", Cron: "0 4 * * *", Run: func(context.Context) error {
			runs.Add(1)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		s.Start(context.Background())
		defer stop(t, s)
		synctest.Wait()
		start := time.Now()

		if err := s.Trigger("daily"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		st := statsOf(t, s, "daily")
		if runs.Load() != 1 || !st.LastRun.Equal(start) {
			t.Fatalf("%d runs, last run %v; want one run at %v", runs.Load(), st.LastRun, start)
		}
		if err := s.Trigger("weekly"); err == nil || !strings.Contains(err.Error(), "weekly") {
			t.Fatalf("trigger of an unknown job: %v", err)
		}
	})
}

func TestJobAddedWhileRunningStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, nil)
		s.Start(context.Background())
		defer stop(t, s)

		var runs atomic.Int32
		if err := s.Add(Job{Name: "late", Every: time.Minute, Run: func(context.Context) error {
			runs.Add(1)
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if runs.Load() != 1 {
			t.Fatalf("job added to a running scheduler ran %d times in one interval, want 1", runs.Load())
		}
	})
}

func TestCronUsesTheLocation(t *testing.T) {
	tests := []struct {
		name string
		loc  *time.Location
		// wantUTC is the UTC time of day the job "30 3 * * *" runs at.
		wantUTC time.Duration
	}{
		{name: "UTC by default", loc: nil, wantUTC: 3*time.Hour + 30*time.Minute},
		{name: "two hours east", loc: time.FixedZone("UTC+2", 2*60*60), wantUTC: time.Hour + 30*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(quiet, tt.loc, nil)
				var runs atomic.Int32
				if err := s.Add(Job{Name: "daily", Cron: "30 3 * * *", Run: func(context.Context) error {
					runs.Add(1)
					return nil
				}}); err != nil {
					t.Fatal(err)
				}
				start := time.Now().UTC()
				s.Start(context.Background())
				defer stop(t, s)
				synctest.Wait()

				want := start.Truncate(24 * time.Hour).Add(tt.wantUTC)
				if !want.After(start) {
					want = want.Add(24 * time.Hour)
				}
				if next := statsOf(t, s, "daily").NextRun; !next.Equal(want) {
					t.Fatalf("next run %v, want %v", next.UTC(), want)
				}

				time.Sleep(want.Sub(start) + time.Second)
				synctest.Wait()
				st := statsOf(t, s, "daily")
				if runs.Load() != 1 || !st.NextRun.Equal(want.Add(24*time.Hour)) {
					t.Fatalf("%d runs, next run %v; want 1 and the same time a day later", runs.Load(), st.NextRun.UTC())
				}
			})
		})
	}
}

func TestDefaultTimeout(t *testing.T) {
	tests := []struct {
		name string
		job  Job
		want time.Duration
	}{
		{name: "short interval", job: Job{Every: 10 * time.Second}, want: 10 * time.Second},
		{name: "long interval", job: Job{Every: time.Hour}, want: 5 * time.Minute},
		{name: "cron", job: Job{Cron: "*/5 * * * *"}, want: 5 * time.Minute},
		{name: "explicit", job: Job{Every: time.Hour, Timeout: 7 * time.Second}, want: 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(quiet, nil, nil)
				var got atomic.Int64
				j := tt.job
				j.Name = "job"
				j.Run = func(ctx context.Context) error {
					deadline, _ := ctx.Deadline()
					got.Store(int64(time.Until(deadline)))
					return nil
				}
				if err := s.Add(j); err != nil {
					t.Fatal(err)
				}
				s.Start(context.Background())
				defer stop(t, s)
				if err := s.Trigger("job"); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if time.Duration(got.Load()) != tt.want {
					t.Fatalf("run deadline in %v, want %v", time.Duration(got.Load()), tt.want)
				}
			})
		})
	}
}

func TestAddValidates(t *testing.T) {
	tests := []struct {
		name    string
		job     Job
		wantErr string
	}{
		{name: "no name", job: Job{Every: time.Second, Run: nop}, wantErr: "needs a name"},
		{name: "no run function", job: Job{Name: "x", Every: time.Second}, wantErr: "needs a name and a run function"},
		{name: "bad cron", job: Job{Name: "x", Cron: "not a cron", Run: nop}, wantErr: `cron "not a cron"`},
		{name: "no schedule", job: Job{Name: "x", Run: nop}, wantErr: "needs Every or Cron"},
		{name: "negative interval", job: Job{Name: "x", Every: -time.Second, Run: nop}, wantErr: "needs Every or Cron"},
		{name: "duplicate", job: Job{Name: "daily", Every: time.Second, Run: nop}, wantErr: "already registered"},
		{name: "valid cron", job: Job{Name: "nightly", Cron: "30 3 * * *", Run: nop}},
	}
	s := New(nil, nil, nil)
	if err := s.Add(Job{Name: "daily", Cron: "0 4 * * *", Run: nop}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Add(tt.job)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStopWaitsForRunningJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(quiet, nil, nil)
		release := make(chan struct{})
		var cancelled atomic.Bool
		if err := s.Add(Job{Name: "stubborn", Every: time.Minute, Run: func(ctx context.Context) error {
			<-ctx.Done()
			cancelled.Store(true)
			<-release // ignores the cancellation for a while
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		s.Start(context.Background())
		if err := s.Trigger("stubborn"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stop with a job still running: %v, want the deadline error", err)
		}
		if !cancelled.Load() {
			t.Fatal("stop did not cancel the running job's context")
		}

		close(release)
		stop(t, s)
	})
}

func TestStopBeforeStart(t *testing.T) {
	if err := New(nil, nil, nil).Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSchedulesListHowEachJobRuns(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	s := New(quiet, berlin, nil)
	for _, j := range []Job{
		{Name: "purge", Cron: "10 3 * * *", Every: time.Hour, Run: nop},
		{Name: "liveness", Every: 10 * time.Second, Run: nop},
		{Name: "rollups", Every: time.Hour, Timeout: time.Minute, Run: nop},
	} {
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	want := []Schedule{
		{Name: "liveness", Every: 10 * time.Second, Timeout: 10 * time.Second},
		{Name: "purge", Cron: "10 3 * * *", Timeout: 5 * time.Minute}, // the cron wins over Every
		{Name: "rollups", Every: time.Hour, Timeout: time.Minute},
	}
	got := s.Schedules()
	if len(got) != len(want) {
		t.Fatalf("schedules %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("schedule %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if s.Location() != berlin {
		t.Fatalf("location %v", s.Location())
	}
}
