package schedule

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestJobsNeverOverlapAndKeepStats(t *testing.T) {
	s := New(nil, nil, prometheus.NewRegistry())
	var running, maxRunning, runs atomic.Int32
	release := make(chan struct{})
	err := s.Add(Job{Name: "slow", Every: time.Millisecond, Run: func(ctx context.Context) error {
		n := running.Add(1)
		if n > maxRunning.Load() {
			maxRunning.Store(n)
		}
		defer running.Add(-1)
		if runs.Add(1) == 1 {
			<-release // first run outlasts many intervals
		}
		if runs.Load() == 3 {
			return errors.New("third run fails")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	for i := 0; i < 20; i++ {
		_ = s.Trigger("slow") // triggers during the run coalesce
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for runs.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if maxRunning.Load() != 1 {
		t.Fatalf("job overlapped itself: %d concurrent runs", maxRunning.Load())
	}
	st := s.Stats()[0]
	if st.Name != "slow" || st.Runs < 10 || st.Errors != 1 || st.LastRun.IsZero() || st.NextRun.IsZero() {
		t.Fatalf("stats %+v", st)
	}
}

func TestCronAndValidation(t *testing.T) {
	s := New(nil, nil, nil)
	if err := s.Add(Job{Name: "bad", Cron: "not a cron", Run: func(context.Context) error { return nil }}); err == nil {
		t.Fatal("bad cron accepted")
	}
	if err := s.Add(Job{Name: "none", Run: func(context.Context) error { return nil }}); err == nil {
		t.Fatal("job without schedule accepted")
	}
	if err := s.Add(Job{Name: "daily", Cron: "30 3 * * *", Run: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Job{Name: "daily", Every: time.Second, Run: func(context.Context) error { return nil }}); err == nil {
		t.Fatal("duplicate job accepted")
	}
	s.Start(context.Background())
	defer s.Stop(context.Background())
	deadline := time.Now().Add(time.Second)
	for s.Stats()[0].NextRun.IsZero() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	next := s.Stats()[0].NextRun
	if next.Hour() != 3 || next.Minute() != 30 {
		t.Fatalf("cron next run %v", next)
	}
}
