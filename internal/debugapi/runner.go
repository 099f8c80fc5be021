package debugapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kaiserhub/kaiser/internal/sim"
)

// node is a running simulated device.
type node interface {
	Run(ctx context.Context) error
	Stopped() <-chan struct{}
	HeartbeatNow() (map[string]any, bool)
	SetOverride(gpio int, v float64, publish bool) bool
	ClearOverride(gpio int) bool
	AddSensor(sp sim.SensorSpec) bool
	RemoveSensor(gpio int) bool
	SetActuator(gpio int, typ string, on bool, value float64, publish bool) bool
	SetHeartbeat(enabled bool, every time.Duration) bool
	EmergencyStop(stop bool) bool
	SetState(s string) bool
	Messages(limit int) []sim.Message
	ClearMessages()
	Actuators() []sim.ActuatorState
}

var _ node = (*sim.Node)(nil)

// heartbeatsOnRequest is the heartbeat interval of a mock without automatic
// heartbeats: heartbeats come only on request.
const heartbeatsOnRequest = sim.Never

type run struct {
	node   node
	cancel context.CancelFunc
}

// Credentials issues the MQTT credentials a mock device connects with
// (docs/api.md §16.1: in `--mqtt-auth devices` mode the hub issues them,
// as for a real device).
type Credentials func(ctx context.Context, espID string) (username, password string, err error)

// runner runs mock devices inside the hub over its real broker.
type runner struct {
	mqttAddr func() string
	limit    int
	newNode  func(sim.NodeConfig) node
	// credentials is nil when mocks connect anonymously (`--mqtt-auth off`).
	credentials Credentials

	mu      sync.Mutex
	running map[string]*run
	wg      sync.WaitGroup
}

func newRunner(mqttAddr func() string, limit int, credentials Credentials) *runner {
	return &runner{
		mqttAddr:    mqttAddr,
		limit:       limit,
		credentials: credentials,
		newNode:     func(c sim.NodeConfig) node { return sim.NewNode(c) },
		running:     map[string]*run{},
	}
}

// full reports whether no further mock may run.
func (m *runner) full() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.running) >= m.limit
}

// node is the running simulation of a device, nil when it is not running.
func (m *runner) node(id string) node {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.running[id]; r != nil {
		return r.node
	}
	return nil
}

// start runs the device with the newer-firmware profile (docs/domain.md §10); a
// running device is left as it is. With credentials, each start issues the
// mock new ones: the hub keeps no password to hand it again.
func (m *runner) start(ctx context.Context, def mockDef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running[def.EspID] != nil || m.mqttAddr == nil {
		return nil
	}

	cfg := nodeConfig(def, m.mqttAddr())
	if m.credentials != nil {
		var err error
		if cfg.Username, cfg.Password, err = m.credentials(ctx, def.EspID); err != nil {
			return fmt.Errorf("credentials for mock %s: %w", def.EspID, err)
		}
	}
	n := m.newNode(cfg)
	runCtx, cancel := context.WithCancel(context.Background())
	m.running[def.EspID] = &run{node: n, cancel: cancel}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = n.Run(runCtx)
	}()
	return nil
}

func nodeConfig(def mockDef, broker string) sim.NodeConfig {
	specs := make([]sim.SensorSpec, 0, len(def.Sensors))
	for _, ms := range def.Sensors {
		specs = append(specs, ms.spec())
	}
	hb := time.Duration(def.HeartbeatSecs) * time.Second
	if !def.AutoHeartbeat {
		hb = heartbeatsOnRequest
	}
	return sim.NodeConfig{
		EspID:          def.EspID,
		Broker:         broker,
		ZoneID:         def.ZoneID,
		MasterZoneID:   def.MasterZoneID,
		Quirks:         sim.Quirks{Seq: true},
		Sensors:        specs,
		HeartbeatEvery: hb,
		Clock:          sim.NewClock(1),
		Seed:           time.Now().UnixNano(),
	}
}

// stop ends a device's simulation and waits until its node has stopped.
func (m *runner) stop(id string) {
	m.mu.Lock()
	r := m.running[id]
	delete(m.running, id)
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.node.Stopped()
	}
}

func (m *runner) stopAll() {
	m.mu.Lock()
	ids := make([]string, 0, len(m.running))
	for id := range m.running {
		ids = append(ids, id)
	}
	m.mu.Unlock()

	for _, id := range ids {
		m.stop(id)
	}
	m.wg.Wait()
}
