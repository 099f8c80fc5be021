package sensor

import (
	"os"
	"testing"

	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// The service starts no goroutines of its own; the store-backed tests must
// close their sink and store. The PostgreSQL server of the replica tests
// stops after the tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
