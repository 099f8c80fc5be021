// Package storetest is the one test suite of the store contract: every
// store implementation (internal/store/sqlite, internal/store/postgres)
// runs Run against itself, so that the domain sees the same behaviour
// whichever database is underneath (docs/architecture.md §6).
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/actuator"
	"github.com/kaiserhub/kaiser/internal/backtest"
	"github.com/kaiserhub/kaiser/internal/device"
	"github.com/kaiserhub/kaiser/internal/emergency"
	"github.com/kaiserhub/kaiser/internal/logic"
	"github.com/kaiserhub/kaiser/internal/notify"
	"github.com/kaiserhub/kaiser/internal/retention"
	"github.com/kaiserhub/kaiser/internal/sensor"
	"github.com/kaiserhub/kaiser/internal/sequence"
	"github.com/kaiserhub/kaiser/internal/store"
	"github.com/kaiserhub/kaiser/internal/zone"
)

// Store is the contract the suite checks: the interfaces of internal/store
// and the store interfaces the domain packages define, plus the few readers
// the suite checks them with. A store assigned to Subject.Store therefore
// implements everything the domain asks of a store.
type Store interface {
	store.Devices
	store.Users
	store.Audit
	store.DeviceCredentials
	sensor.Store
	actuator.Store
	emergency.Store
	zone.Store
	logic.Store
	sequence.Store
	notify.Store
	retention.Trimmer
	device.PushStore
	backtest.History

	Transitions(ctx context.Context, deviceID string) ([]store.Transition, error)
	HeartbeatUptimes(ctx context.Context, deviceID string) ([]int64, error)
	ZoneChanges(ctx context.Context, espID string) ([]store.ZoneChange, error)
}

// Sink is a store's reading sink.
type Sink interface {
	Add(ctx context.Context, r store.Reading) error
	Flush(ctx context.Context) error
	Close(ctx context.Context) error
}

// Subject is one freshly opened, empty store; the opener closes it when
// the test ends.
type Subject struct {
	Store Store
	// NewSink starts a reading sink on the store; the suite closes it.
	NewSink func() Sink
}

// Run runs the suite, each case against a store open returns fresh.
func Run(t *testing.T, open func(t *testing.T) Subject) {
	cases := []struct {
		name string
		run  func(t *testing.T, s Subject)
	}{
		{"DeviceSavesKeepTheNewestVersion", deviceSavesKeepTheNewestVersion},
		{"DeviceChangeAndTransitionOrder", deviceChangeAndTransitionOrder},
		{"PurgeDeviceKeepsANewerSave", purgeDeviceKeepsANewerSave},
		{"ReadingsRoundTrip", readingsRoundTrip},
		{"ReadingCommitsAreReported", readingCommitsAreReported},
		{"HubTimedReadingsAreNeverDropped", hubTimedReadingsAreNeverDropped},
		{"RollupsMatchTheRawReadings", rollupsMatchTheRawReadings},
		{"ReadingRetentionDeletesOldestFirst", readingRetentionDeletesOldestFirst},
		{"LatchSavesKeepTheNewestVersion", latchSavesKeepTheNewestVersion},
		{"ActuatorCommandsKeepTheNewestVersion", actuatorCommandsKeepTheNewestVersion},
		{"ActuatorConfigsAndStates", actuatorConfigsAndStates},
		{"UsersAndTokens", usersAndTokens},
		{"AuditAndSettings", auditAndSettings},
		{"AlertsAndNotifications", alertsAndNotifications},
		{"ZonesAndSubzones", zonesAndSubzones},
		{"RulesAndTheirHistory", rulesAndTheirHistory},
		{"SequencesAndCredentials", sequencesAndCredentials},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

// base is a fixed time on a whole second, far from any day boundary.
var base = time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func flush(t *testing.T, s Store) {
	t.Helper()
	must(t, s.Flush(ctx(t)))
}
