package sensor

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kaiserhub/kaiser/internal/store/postgres/pgtest"
)

// The service starts no goroutines of its own; the store-backed tests must
// close their sink and store. The PostgreSQL server of the replica tests
// stops after the tests.
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
