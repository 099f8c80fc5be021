package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// The writers measure what SQLite's measure: committed batches and their
// time, and failed operations.
func TestWriterMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := store.NewWriterMetrics(reg, "main")
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{
		Metrics:        m,
		ControlMetrics: store.NewWriterMetrics(reg, "control"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	u := store.User{Username: "ana", Email: "ana@example.org", Role: "viewer", IsActive: true,
		PasswordHash: "x", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if _, err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, u); err == nil {
		t.Fatal("a second user with the same name was stored")
	}

	if n := testutil.CollectAndCount(m.BatchSize); n != 1 {
		t.Fatalf("batch histogram: %d series", n)
	}
	body, err := testutil.GatherAndLint(reg)
	if err != nil || len(body) > 0 {
		t.Fatalf("metrics lint: %v %v", body, err)
	}
	if got := testutil.ToFloat64(m.Errors); got != 1 {
		t.Fatalf("write errors %v, want 1 (the duplicate)", got)
	}
	if got := histogramCount(t, reg, "kaiser_store_batch_ops", "main"); got < 1 {
		t.Fatalf("committed batches of the main writer: %d", got)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, db string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "db" && l.GetValue() == db {
					return mm.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
