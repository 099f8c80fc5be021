package postgres_test

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/retention"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sequence"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
	"github.com/kaiserhub/kaiser/internal/store/storetest"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// Every store interface the domain packages define is implemented.
var (
	_ sensor.Store      = (*postgres.Store)(nil)
	_ sensor.Sink       = (*postgres.ReadingSink)(nil)
	_ actuator.Store    = (*postgres.Store)(nil)
	_ emergency.Store   = (*postgres.Store)(nil)
	_ zone.Store        = (*postgres.Store)(nil)
	_ logic.Store       = (*postgres.Store)(nil)
	_ sequence.Store    = (*postgres.Store)(nil)
	_ notify.Store      = (*postgres.Store)(nil)
	_ retention.Trimmer = (*postgres.Store)(nil)
	_ device.PushStore  = (*postgres.Store)(nil)
	_ backtest.History  = (*postgres.Store)(nil)
)

// The shared server stops after the tests; nothing of the store's lingers.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println("goleak:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

func open(t *testing.T) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), pgtest.DSN(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// The PostgreSQL store passes the store suite that SQLite passes too.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Subject {
		s := open(t)
		return storetest.Subject{Store: s, NewSink: func() storetest.Sink { return s.NewReadingSink(0, nil) }}
	})
}
