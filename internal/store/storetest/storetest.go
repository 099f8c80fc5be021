// Package storetest is the one test suite of the store contract: every
// store implementation (internal/store/sqlite, internal/store/postgres)
// runs Run against itself, so that the domain sees the same behaviour
// whichever database is underneath (docs/architecture.md §6).
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/store"
)

// Store is the contract the suite checks: the interfaces of internal/store
// and the methods the domain packages' store interfaces ask for, plus the
// few readers the suite checks them with.
type Store interface {
	store.Devices
	store.Users
	store.Audit
	store.DeviceCredentials

	Transitions(ctx context.Context, deviceID string) ([]store.Transition, error)
	HeartbeatUptimes(ctx context.Context, deviceID string) ([]int64, error)
	SaveConfigPush(ctx context.Context, espID, correlationID, status string, doc []byte) error
	LoadConfigPushes(ctx context.Context) (map[string][]byte, error)

	SaveSensorConfig(ctx context.Context, d store.Doc) error
	DeleteSensorConfig(ctx context.Context, id string) error
	LoadSensorConfigs(ctx context.Context) ([]store.Doc, error)
	EnsureSeries(ctx context.Context, k store.SeriesKey) (int64, error)
	LoadSeries(ctx context.Context) (map[store.SeriesKey]int64, error)
	LatestReadings(ctx context.Context) ([]store.RawRow, error)
	QueryReadings(ctx context.Context, q store.RawQuery) ([]store.RawRow, error)
	Buckets(ctx context.Context, series int64, source string, start, end, width, align int64) ([]store.Bucket, error)
	CountReadings(ctx context.Context, series int64, before int64) (int64, error)
	DeleteReadingsBatch(ctx context.Context, series int64, before int64, limit int) (int64, error)
	DeleteRollupsBefore(ctx context.Context, source string, before int64, limit int) (int64, error)
	RepairRollups(ctx context.Context, from, to time.Time) error
	RawSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error)
	MinuteSamples(ctx context.Context, series, from, to int64, limit int) ([]store.Sample, error)

	SaveAlert(ctx context.Context, a store.Alert) error
	OpenAlerts(ctx context.Context) ([]store.Alert, error)
	ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, int, error)
	MarkRead(ctx context.Context, userID int64, id string) (int64, error)
	DeleteHistoryBefore(ctx context.Context, table string, before time.Time, limit int) (int64, error)

	SaveActuatorConfig(ctx context.Context, d store.Doc) error
	DeleteActuatorConfig(ctx context.Context, id string) error
	LoadActuatorConfigs(ctx context.Context) ([]store.Doc, error)
	SaveActuatorState(ctx context.Context, st store.ActuatorState) error
	QueueActuatorState(ctx context.Context, st store.ActuatorState) error
	LoadActuatorStates(ctx context.Context) ([]store.ActuatorState, error)
	SaveActuatorCommand(ctx context.Context, c store.ActuatorCommand) error
	QueueActuatorCommand(ctx context.Context, c store.ActuatorCommand) error
	GetActuatorCommand(ctx context.Context, id string) (store.ActuatorCommand, error)
	FindActuatorCommand(ctx context.Context, correlationID string) (store.ActuatorCommand, error)
	OpenActuatorCommands(ctx context.Context) ([]store.ActuatorCommand, error)
	ActuatorHistory(ctx context.Context, espID string, gpio, limit int) ([]store.ActuatorCommand, int, error)
	DeleteActuatorHistoryBefore(ctx context.Context, before time.Time, limit int) (int64, error)

	SaveLatches(ctx context.Context, latches []store.EmergencyLatch) error
	LoadLatches(ctx context.Context) ([]store.EmergencyLatch, error)
	SaveEmergencyToken(ctx context.Context, t store.EmergencyToken) error
	LoadEmergencyTokens(ctx context.Context) ([]store.EmergencyToken, error)

	LoadZones(ctx context.Context) ([]store.Zone, error)
	SaveZone(ctx context.Context, z store.Zone) error
	DeleteZone(ctx context.Context, zoneID string) error
	LoadSubzones(ctx context.Context) ([]store.Subzone, error)
	SaveSubzone(ctx context.Context, sz store.Subzone) error
	DeleteSubzone(ctx context.Context, espID, subzoneID string) error
	AppendZoneChange(ctx context.Context, c store.ZoneChange) error
	ZoneChanges(ctx context.Context, espID string) ([]store.ZoneChange, error)

	LoadRules(ctx context.Context) ([]store.Rule, error)
	SaveRule(ctx context.Context, r store.Rule) error
	SetRuleTriggered(ctx context.Context, id string, at time.Time) error
	DeleteRule(ctx context.Context, id string) error
	SaveRuleExecution(ctx context.Context, e store.RuleExecution) error
	QueryRuleExecutions(ctx context.Context, f store.RuleExecutionFilter) (store.RuleExecutionPage, error)
	RuleStats(ctx context.Context) (map[string]store.RuleStats, error)
	LoadHysteresis(ctx context.Context) ([]store.HysteresisState, error)
	SaveHysteresis(ctx context.Context, h store.HysteresisState) error
	ResetHysteresis(ctx context.Context, ruleID string) error
	SaveContinuation(ctx context.Context, c store.RuleContinuation) error
	DeleteContinuation(ctx context.Context, id string) error
	LoadContinuations(ctx context.Context) ([]store.RuleContinuation, error)
	SaveSequence(ctx context.Context, q store.Sequence) error
	LoadSequences(ctx context.Context) ([]store.Sequence, error)
	DeleteSequencesFinishedBefore(ctx context.Context, t time.Time) (int, error)
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
