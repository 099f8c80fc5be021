package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/store/postgres"
	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
	"github.com/kaiserhub/kaiser/internal/store/storetest"
)

// The reading sink is the sensor domain's; storetest.Store holds every
// store interface of the domain, so TestStoreContract checks the rest.
var _ sensor.Sink = (*postgres.ReadingSink)(nil)

// The shared server stops after the tests; nothing of the store's lingers.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

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
