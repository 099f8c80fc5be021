package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// fakeNet stands in for the broker: it records what the node publishes and
// hands it the hub's messages, so the node runs in a synctest bubble.
type fakeNet struct {
	mu      sync.Mutex
	sent    []published
	taken   int
	deliver func(topic string, payload []byte)
	subs    []string
	refuse  bool // the broker is unreachable
}

type published struct {
	topic, payload string
	retain         bool
}

type fakeLink struct {
	net  *fakeNet
	done chan struct{}
	once sync.Once
}

var _ link = (*fakeLink)(nil)

func (f *fakeNet) dial(_ string, o WireOptions) (link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return nil, errors.New("connection refused")
	}
	f.deliver = o.OnMessage
	return &fakeLink{net: f, done: make(chan struct{})}, nil
}

func (l *fakeLink) Publish(topic string, payload []byte, retain bool) error {
	l.net.mu.Lock()
	defer l.net.mu.Unlock()
	l.net.sent = append(l.net.sent, published{topic: topic, payload: string(payload), retain: retain})
	return nil
}

func (l *fakeLink) Flush() error { return nil }

func (l *fakeLink) Subscribe(filters ...string) error {
	l.net.mu.Lock()
	defer l.net.mu.Unlock()
	l.net.subs = append(l.net.subs, filters...)
	return nil
}

func (l *fakeLink) Kill() { l.once.Do(func() { close(l.done) }) }

func (l *fakeLink) Done() <-chan struct{} { return l.done }

const testID = "ESP_5EA7C0"

// t0 is the bubble's start, the node's boot, as Unix seconds.
var t0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// rig is one node on a fake network inside a synctest bubble.
type rig struct {
	t       *testing.T
	net     *fakeNet
	node    *Node
	lastSeq int64
}

var seqField = regexp.MustCompile(`"seq":([0-9]+)`)

// seqless checks that every seq is larger than the one before and replaces
// it with N, so expectations need not count publications.
func (r *rig) seqless(payload string) string {
	r.t.Helper()
	m := seqField.FindStringSubmatch(payload)
	if m == nil {
		if r.node.cfg.Quirks.Seq {
			r.t.Fatalf("newer firmware payload without seq: %s", payload)
		}
		return payload
	}
	seq, _ := strconv.ParseInt(m[1], 10, 64)
	if seq <= r.lastSeq {
		r.t.Fatalf("seq %d after %d: %s", seq, r.lastSeq, payload)
	}
	r.lastSeq = seq
	return seqField.ReplaceAllString(payload, `"seq":N`)
}

// head is the start of a hand-built device payload: esp_id, then seq on
// newer firmware.
func (r *rig) head() string {
	if r.node.cfg.Quirks.Seq {
		return `"esp_id":"` + testID + `","seq":N`
	}
	return `"esp_id":"` + testID + `"`
}

func now() int64 { return time.Now().Unix() }

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }

func (r *rig) status(gpio int, typ string, on bool, pwm int, runtimeMS int64, emergency string) string {
	return fmt.Sprintf(`actuator/%d/status {%s,"zone_id":"","subzone_id":"","ts":%d,"gpio":%d,"type":"%s",`+
		`"state":%t,"pwm":%d,"runtime_ms":%d,"emergency":"%s"}`, gpio, r.head(), now(), gpio, typ, on, pwm, runtimeMS, emergency)
}

func (r *rig) response(gpio int, cmd, value string, duration uint32, ok bool, msg, correlation string) string {
	line := fmt.Sprintf(`actuator/%d/response {%s,"zone_id":"","ts":%d,"gpio":%d,"command":"%s","value":%s,`+
		`"duration":%d,"success":%t,"message":"%s"`, gpio, r.head(), now(), gpio, cmd, value, duration, ok, msg)
	if correlation != "" {
		line += `,"correlation_id":"` + correlation + `"`
	}
	return line + "}"
}

func (r *rig) alert(gpio int, kind, msg string) string {
	return fmt.Sprintf(`actuator/%d/alert {%s,"zone_id":"","ts":%d,"gpio":%d,"alert_type":"%s","message":"%s"}`,
		gpio, r.head(), now(), gpio, kind, msg)
}

// configResponse is a config_response; code "" is a success.
func (r *rig) configResponse(section string, count int, msg, code string) string {
	status := "success"
	if code != "" {
		status = "error"
	}
	line := fmt.Sprintf(`config_response {"status":"%s","type":"%s","count":%d,"message":"%s"`, status, section, count, msg)
	if code != "" {
		line += `,"error_code":"` + code + `"`
	}
	if r.node.cfg.Quirks.Seq {
		line += `,"correlation_id":"cfg-1","seq":N`
	}
	return line + "}"
}

// noSensors is the C2 error every actuator-only config draws.
func (r *rig) noSensors() string {
	return r.configResponse("sensor", 0, "Sensor config array is empty", "MISSING_FIELD")
}

func (r *rig) configured(n int) string {
	return r.configResponse("actuator", n, fmt.Sprintf("Configured %d actuator(s) successfully", n), "")
}

// boot starts a node with the given --quirks list and lets it settle.
func boot(t *testing.T, quirks string, edit ...func(*NodeConfig)) *rig {
	t.Helper()
	q, err := ParseQuirks(quirks)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NodeConfig{
		EspID:  testID,
		Broker: "fake:1883",
		Quirks: q,
		Clock:  NewClock(1),
	}
	for _, e := range edit {
		e(&cfg)
	}
	r := &rig{t: t, net: &fakeNet{}, node: NewNode(cfg)}
	r.node.dial = r.net.dial
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = r.node.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.node.Stopped() })
	synctest.Wait()
	r.take()
	return r
}

// hub delivers a hub message and waits until the node has dealt with it.
func (r *rig) hub(topic, payload string) {
	r.t.Helper()
	r.net.mu.Lock()
	deliver := r.net.deliver
	r.net.mu.Unlock()
	deliver(topic, []byte(payload))
	synctest.Wait()
}

// dev is a device topic as the hub addresses it.
func dev(suffix string) string { return "kaiser/god/esp/" + testID + "/" + suffix }

// wait lets simulated time pass.
func (r *rig) wait(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// take returns what the node published since the last take, as
// "suffix payload", without heartbeats; every payload must decode with the
// hub's own decoders.
func (r *rig) take() []string {
	r.t.Helper()
	r.net.mu.Lock()
	fresh := r.net.sent[r.net.taken:]
	r.net.taken = len(r.net.sent)
	r.net.mu.Unlock()
	var out []string
	for _, p := range fresh {
		if strings.HasSuffix(p.topic, "/system/heartbeat") {
			continue
		}
		r.decodes(p)
		_, suffix, _ := strings.Cut(p.topic, "/esp/"+testID+"/")
		out = append(out, suffix+" "+r.seqless(p.payload))
	}
	return out
}

// decodes checks a publication against the hub's decoder for its topic.
func (r *rig) decodes(p published) {
	r.t.Helper()
	topic, err := contract.ParseTopic(p.topic)
	if err != nil {
		r.t.Fatalf("the hub cannot route %s: %v", p.topic, err)
	}
	body := []byte(p.payload)
	switch {
	case strings.HasSuffix(p.topic, "/status"):
		_, err = contract.DecodeActuatorStatus(topic, body)
	case strings.HasSuffix(p.topic, "/emergency/response"):
		_, err = contract.DecodeEmergencyResponse(topic, body)
	case strings.HasSuffix(p.topic, "/emergency/error"):
		_, err = contract.DecodeEmergencyError(topic, body)
	case strings.HasSuffix(p.topic, "/response") && strings.Contains(p.topic, "/actuator/"):
		_, err = contract.DecodeActuatorResponse(topic, body)
	case strings.HasSuffix(p.topic, "/alert"):
		_, err = contract.DecodeActuatorAlert(topic, body)
	case strings.HasSuffix(p.topic, "/config_response"):
		_, err = contract.DecodeConfigResponse(topic, body)
	case strings.HasSuffix(p.topic, "/system/command/response") && strings.Contains(p.payload, `"status"`):
		// newer firmware's answers carry command/success instead of status
		// (docs/protocol.md §3.1.11), which the hub's decoder does not read yet
		_, err = contract.DecodeSystemCommandResponse(topic, body)
	default:
		if !json.Valid(body) {
			err = errInvalid
		}
	}
	if err != nil {
		r.t.Fatalf("the hub rejects %s %s: %v", p.topic, p.payload, err)
	}
}

var errInvalid = errors.New("invalid JSON")

// expect compares publications with the wanted lines, in order.
func (r *rig) expect(want ...string) {
	r.t.Helper()
	got := r.take()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		r.t.Fatalf("published:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// state is one actuator's state, failing when it does not exist.
func (r *rig) state(gpio int) ActuatorState {
	r.t.Helper()
	for _, s := range r.node.Actuators() {
		if s.GPIO == gpio {
			return s
		}
	}
	r.t.Fatalf("no actuator on gpio %d in %+v", gpio, r.node.Actuators())
	return ActuatorState{}
}

// configure pushes one actuator section (and an empty sensor one).
func (r *rig) configure(items ...contract.ActuatorConfigItem) {
	r.t.Helper()
	b, err := contract.MarshalConfig(contract.Config{Actuators: items, Timestamp: t0, CorrelationID: "cfg-1"})
	if err != nil {
		r.t.Fatal(err)
	}
	r.hub(dev("config"), string(b))
}

func item(gpio int, typ string) contract.ActuatorConfigItem {
	return contract.ActuatorConfigItem{
		GPIO:         gpio,
		ActuatorType: typ,
		ActuatorName: typ + " one",
		Active:       true,
		AuxGPIO:      255,
	}
}

// command sends an actuator command in the hub's encoding.
func (r *rig) command(gpio int, name string, value float64, duration int64, correlation string) {
	r.t.Helper()
	b, err := contract.Marshal(contract.NewActuatorCommand(name, value, duration, time.Unix(t0, 0), correlation))
	if err != nil {
		r.t.Fatal(err)
	}
	r.hub(dev("actuator/"+strconv.Itoa(gpio)+"/command"), string(b))
}
