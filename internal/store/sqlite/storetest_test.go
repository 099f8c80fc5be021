package sqlite

import (
	"context"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store/storetest"
)

// The SQLite store passes the store suite that PostgreSQL passes too.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Subject {
		s := open(t, t.TempDir())
		t.Cleanup(func() { s.Close(context.Background()) })
		return storetest.Subject{Store: s, NewSink: func() storetest.Sink { return s.NewReadingSink(0, nil) }}
	})
}
