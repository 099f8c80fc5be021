package hub

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
	"github.com/kaiserhub/kaiser/internal/store/sqlite"
	"github.com/kaiserhub/kaiser/internal/store/transfer"
)

// A site run on SQLite moves to PostgreSQL with kaiser migrate-store's
// transfer: every table's rows arrive (counts compared per table), both
// stores answer every read of the store interfaces the same, and a hub
// started on PostgreSQL carries on where the SQLite one stopped (latch in
// force, readings there). A second transfer into the filled database is
// refused.
func TestMigrateStoreSQLiteToPostgres(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Config{})
	dir, url := t.TempDir(), srv.NewDatabaseURL(t)
	h, _, incident := runSite(t, Config{DataDir: dir})
	stopHub(t, h)

	ctx := t.Context()
	rep, err := transfer.SQLiteToPostgres(ctx, dir, url, transfer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]int64{}
	for _, c := range rep.Tables {
		copied[c.Table] = c.Target
	}
	for _, name := range []string{"devices", "users", "readings", "sensor_series", "audit_log",
		"actuator_configs", "actuator_history", "emergency_latches", "device_transitions", "device_heartbeats"} {
		if copied[name] == 0 {
			t.Errorf("no %s copied: %v", name, rep.Tables)
		}
	}

	lite, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close(context.Background())
	pg, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameReads(t, lite, pg)
	if err := pg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lite.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := transfer.SQLiteToPostgres(ctx, dir, url, transfer.Options{}); err == nil {
		t.Fatal("a second transfer into the filled database was not refused")
	}

	h, _ = checkSite(t, Config{DataDir: t.TempDir(), Database: url}, incident)
	stopHub(t, h)
}

// sameReads asks both stores every read of the store interfaces that
// lists what they hold and fails on any difference.
func sameReads(t *testing.T, a, b Store) {
	t.Helper()
	ctx := t.Context()
	reads := map[string]func(Store) (any, error){
		"devices":      func(s Store) (any, error) { return s.LoadDevices(ctx) },
		"users":        func(s Store) (any, error) { return s.ListUsers(ctx) },
		"series":       func(s Store) (any, error) { return s.LoadSeries(ctx) },
		"readings":     func(s Store) (any, error) { return s.QueryReadings(ctx, store.RawQuery{Limit: 1 << 20}) },
		"latest":       func(s Store) (any, error) { return s.LatestReadings(ctx) },
		"sensors":      func(s Store) (any, error) { return s.LoadSensorConfigs(ctx) },
		"actuators":    func(s Store) (any, error) { return s.LoadActuatorConfigs(ctx) },
		"states":       func(s Store) (any, error) { return s.LoadActuatorStates(ctx) },
		"latches":      func(s Store) (any, error) { return s.LoadLatches(ctx) },
		"tokens":       func(s Store) (any, error) { return s.LoadEmergencyTokens(ctx) },
		"credentials":  func(s Store) (any, error) { return s.LoadDeviceCredentials(ctx) },
		"zones":        func(s Store) (any, error) { return s.LoadZones(ctx) },
		"subzones":     func(s Store) (any, error) { return s.LoadSubzones(ctx) },
		"rules":        func(s Store) (any, error) { return s.LoadRules(ctx) },
		"hysteresis":   func(s Store) (any, error) { return s.LoadHysteresis(ctx) },
		"sequences":    func(s Store) (any, error) { return s.LoadSequences(ctx) },
		"blacklist":    func(s Store) (any, error) { return s.LoadBlacklist(ctx, time.Unix(0, 0)) },
		"continuation": func(s Store) (any, error) { return s.LoadContinuations(ctx) },
		"audit": func(s Store) (any, error) {
			rows, n, err := s.QueryAudit(ctx, store.AuditFilter{Limit: 10000})
			return []any{rows, n}, err
		},
		"transitions": func(s Store) (any, error) {
			return s.(interface {
				Transitions(context.Context, string) ([]store.Transition, error)
			}).Transitions(ctx, siteDevice)
		},
	}
	for name, read := range reads {
		va, err := read(a)
		if err != nil {
			t.Fatalf("%s from SQLite: %v", name, err)
		}
		vb, err := read(b)
		if err != nil {
			t.Fatalf("%s from PostgreSQL: %v", name, err)
		}
		if !reflect.DeepEqual(va, vb) {
			t.Errorf("%s differ:\nSQLite     %+v\nPostgreSQL %+v", name, va, vb)
		}
	}
}
