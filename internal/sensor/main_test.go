package sensor

import (
	"testing"

	"go.uber.org/goleak"
)

// The service starts no goroutines of its own; the SQLite-backed tests must
// close their sink and store.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
