package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// second is the actuator second of these tests: the hub's 10 s command
// timeout is 500 ms, a 20 s duration 1 s.
const second = 50 * time.Millisecond

// node answers like the baseline firmware over a real MQTT connection
// (docs/protocol.md §3.1.3–§3.1.5, K9): a config gets one config_response
// per section and a status per actuator; a command gets status, response,
// status, without correlation id (the baseline echoes none).
type node struct {
	t      *testing.T
	c      *client
	id     string
	silent atomic.Bool
	done   chan struct{}

	mu       sync.Mutex
	on       map[int]bool
	commands []nodeCommand
	seen     chan nodeCommand
}

type nodeCommand struct {
	gpio int
	at   time.Time
	body map[string]any
}

func (c nodeCommand) name() string { s, _ := c.body["command"].(string); return s }

func startNode(t *testing.T, c *client, id string) *node {
	n := &node{t: t, c: c, id: id, done: make(chan struct{}), on: map[int]bool{}, seen: make(chan nodeCommand, 64)}
	c.subscribe(t, "kaiser/god/esp/"+id+"/actuator/+/command")
	go n.run()
	t.Cleanup(func() { close(n.done) })
	return n
}

func (n *node) run() {
	for {
		select {
		case <-n.done:
			return
		case m := <-n.c.msgs:
			switch {
			case strings.HasSuffix(m.topic, "/config"):
				n.configure(m.payload)
			case strings.Contains(m.topic, "/actuator/") && strings.HasSuffix(m.topic, "/command"):
				n.command(m)
			}
		}
	}
}

func (n *node) topic(suffix string) string { return "kaiser/god/esp/" + n.id + "/" + suffix }

func (n *node) configure(payload string) {
	var cfg struct {
		Actuators []struct {
			GPIO int `json:"gpio"`
		} `json:"actuators"`
	}
	_ = json.Unmarshal([]byte(payload), &cfg)
	_ = n.c.publish(n.topic("config_response"), `{"status":"error","type":"sensor","count":0,`+
		`"message":"Sensor config array is empty","error_code":"MISSING_FIELD"}`, true)
	if len(cfg.Actuators) == 0 {
		return
	}
	_ = n.c.publish(n.topic("config_response"), fmt.Sprintf(`{"status":"success","type":"actuator","count":%d,`+
		`"message":"Configured %d actuator(s) successfully"}`, len(cfg.Actuators), len(cfg.Actuators)), true)
	for _, a := range cfg.Actuators {
		n.mu.Lock()
		n.on[a.GPIO] = false // C5: re-created off
		n.mu.Unlock()
		n.status(a.GPIO)
	}
}

func (n *node) status(gpio int) {
	n.mu.Lock()
	on := n.on[gpio]
	n.mu.Unlock()
	pwm := 0
	if on {
		pwm = 255
	}
	_ = n.c.publish(n.topic(fmt.Sprintf("actuator/%d/status", gpio)), fmt.Sprintf(
		`{"esp_id":%q,"ts":0,"gpio":%d,"type":"pump","state":%t,"pwm":%d,"runtime_ms":0,"emergency":"normal"}`,
		n.id, gpio, on, pwm), true)
}

func (n *node) command(m message) {
	var gpio int
	fmt.Sscanf(m.topic[strings.Index(m.topic, "/actuator/")+len("/actuator/"):], "%d", &gpio)
	var body map[string]any
	_ = json.Unmarshal([]byte(m.payload), &body)
	c := nodeCommand{gpio: gpio, at: time.Now(), body: body}
	n.mu.Lock()
	n.commands = append(n.commands, c)
	n.mu.Unlock()
	n.seen <- c
	if n.silent.Load() {
		return
	}
	n.answer(c)
}

// answer is the baseline's reaction to a command: status, response, status.
func (n *node) answer(c nodeCommand) {
	n.mu.Lock()
	n.on[c.gpio] = c.name() == "ON"
	n.mu.Unlock()
	n.status(c.gpio)
	_ = n.c.publish(n.topic(fmt.Sprintf("actuator/%d/response", c.gpio)), fmt.Sprintf(
		`{"esp_id":%q,"ts":0,"gpio":%d,"command":%q,"value":%v,"duration":%v,"success":true,`+
			`"message":"Command executed"}`, n.id, c.gpio, c.name(), c.body["value"], c.body["duration"]), true)
	n.status(c.gpio)
}

// next waits for the node's next command.
func (n *node) next(t *testing.T, timeout time.Duration) nodeCommand {
	t.Helper()
	select {
	case c := <-n.seen:
		return c
	case <-time.After(timeout):
		t.Fatalf("no command within %s", timeout)
	}
	return nodeCommand{}
}

// pollJSON polls path until ok accepts the body.
func pollJSON(t *testing.T, c apiClient, tok, path string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.do("GET", path, tok, nil)
		if ok(r.body) {
			return r.body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never as expected: %s", path, r.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusIsState(want string) func(map[string]any) bool {
	return func(b map[string]any) bool {
		st, _ := b["state"].(map[string]any)
		return st["state"] == want
	}
}

func commandIs(status string) func(map[string]any) bool {
	return func(b map[string]any) bool { return b["status"] == status }
}

// actuatorHub starts a hub with a node whose pump on GPIO 5 has max runtime 60 s.
func actuatorHub(t *testing.T, dataDir string) (*Hub, apiClient, *node, string, string) {
	t.Helper()
	return actuatorHubWith(t, Config{DataDir: dataDir})
}

// actuatorHubWith is actuatorHub on cfg (its store, its data directory).
func actuatorHubWith(t *testing.T, cfg Config) (*Hub, apiClient, *node, string, string) {
	t.Helper()
	cfg.ActuatorSecond = second
	h, c := apiHub(t, cfg)
	admin, operator, viewer := setupUsers(t, c)
	dev := onlineDevice(t, h, c, admin, "ESP_A1B2C3")
	n := startNode(t, dev, "ESP_A1B2C3")

	pumpCfg := map[string]any{"actuator_type": "pump", "name": "Irrigation pump", "max_runtime_seconds": 60}
	if r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5", viewer, pumpCfg); r.status != 403 {
		t.Fatalf("viewer configured an actuator: %d %s", r.status, r.raw)
	}
	r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5", operator, pumpCfg)
	if r.status != 200 || r.body["actuator_type"] != "pump" || r.body["config_sent"] != true {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	pollJSON(t, c, viewer, "/api/v1/actuators/ESP_A1B2C3/5", func(b map[string]any) bool {
		return b["config_status"] == "applied" && b["state"] == "off"
	})
	return h, c, n, operator, viewer
}

// REST ON with duration 20 s for a pump with max runtime 60 s: the device
// gets ON, duration 20 and a correlation id; its answers make the command
// acknowledged and the actuator on; after 20 s the hub sends OFF
// (system:duration) and the actuator reads off. A viewer may not command.
func TestActuatorCommandEndToEnd(t *testing.T) {
	h, c, n, operator, viewer := actuatorHub(t, "")
	defer stopHub(t, h)
	ws := dialWS(t, h, viewer, "dashboard")

	on := map[string]any{"command": "ON", "duration": 20}
	if r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5/command", viewer, on); r.status != 403 {
		t.Fatalf("viewer commanded: %d %s", r.status, r.raw)
	}
	r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5/command", operator, on)
	if r.status != 200 || r.body["status"] != "sent" || r.body["command_sent"] != true || r.body["duration"] != 20.0 {
		t.Fatalf("command: %d %s", r.status, r.raw)
	}
	id := r.body["command_id"].(string)

	got := n.next(t, 5*time.Second)
	if got.name() != "ON" || got.body["value"] != 1.0 || got.body["duration"] != 20.0 || got.body["correlation_id"] != id {
		t.Fatalf("the device got %+v", got.body)
	}
	pollJSON(t, c, viewer, "/api/v1/actuators/commands/"+id, commandIs("acknowledged"))
	pollJSON(t, c, viewer, "/api/v1/actuators/ESP_A1B2C3/5/status", statusIsState("on"))
	// The live feed shows the confirmed state and the command's lifecycle, in either order.
	seen := map[string]bool{}
	ws.await(t, func(m map[string]any) bool {
		d, _ := m["data"].(map[string]any)
		switch {
		case m["type"] == "command_status" && d["command_id"] == id && d["status"] == "acknowledged":
			seen["ack"] = true
		case m["type"] == "actuator_status" && d["state"] == "on" && d["gpio"] == 5.0:
			seen["on"] = true
		case m["type"] == "actuator_response" && d["command_id"] == id:
			seen["response"] = true
		}
		return len(seen) == 3
	})

	off := n.next(t, 5*time.Second)
	if off.name() != "OFF" || off.body["duration"] != 0.0 {
		t.Fatalf("after the duration the device got %+v", off.body)
	}
	if elapsed := off.at.Sub(got.at); elapsed < 20*second-10*time.Millisecond {
		t.Fatalf("the auto-off came %s after the ON, before the 20 s (%s)", elapsed, 20*second)
	}
	pollJSON(t, c, viewer, "/api/v1/actuators/ESP_A1B2C3/5/status", statusIsState("off"))
	hist := c.do("GET", "/api/v1/actuators/ESP_A1B2C3/5/history?limit=5", viewer, nil)
	entries, _ := hist.body["entries"].([]any)
	if len(entries) == 0 || entries[0].(map[string]any)["issued_by"] != "system:duration" {
		t.Fatalf("history: %s", hist.raw)
	}

	// Rejections answer with their codes.
	cases := []struct {
		body   map[string]any
		path   string
		status int
		code   string
	}{
		{map[string]any{"command": "PWM", "value": 0.5}, "/api/v1/actuators/ESP_A1B2C3/5/command", 400, "COMMAND_NOT_SUPPORTED"},
		{map[string]any{"command": "PWM", "value": 255}, "/api/v1/actuators/ESP_A1B2C3/5/command", 422, "VALIDATION_ERROR"},
		{map[string]any{"command": "ON"}, "/api/v1/actuators/ESP_A1B2C3/6/command", 404, "ACTUATOR_NOT_FOUND"},
		{map[string]any{"command": "ON"}, "/api/v1/actuators/ESP_NOPE01/5/command", 404, "ESP_NOT_FOUND"},
	}
	for _, tc := range cases {
		if r := c.do("POST", tc.path, operator, tc.body); r.status != tc.status || errCode(r) != tc.code {
			t.Errorf("%v: %d %s", tc.body, r.status, r.raw)
		}
	}
}

// A device that never answers: the command ends timeout after 10 s; an
// answer after that is kept as late_ack and changes nothing.
func TestActuatorTimeoutAndLateAck(t *testing.T) {
	h, c, n, operator, viewer := actuatorHub(t, "")
	defer stopHub(t, h)
	n.silent.Store(true)

	r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5/command", operator, map[string]any{"command": "ON"})
	if r.status != 200 {
		t.Fatalf("command: %d %s", r.status, r.raw)
	}
	id := r.body["command_id"].(string)
	sent := n.next(t, 5*time.Second)
	body := pollJSON(t, c, viewer, "/api/v1/actuators/commands/"+id, commandIs("timeout"))
	if body["late_ack"] != nil {
		t.Fatalf("late_ack before any answer: %v", body)
	}

	n.answer(sent)
	body = pollJSON(t, c, viewer, "/api/v1/actuators/commands/"+id, func(b map[string]any) bool {
		return b["late_ack"] != nil
	})
	if body["status"] != "timeout" {
		t.Fatalf("a late answer changed the status: %v", body)
	}
}

// A hub restart while a pump runs: the persisted auto-off fires at the
// original deadline, or at once when it passed while the hub was down.
func TestActuatorAutoOffSurvivesRestart(t *testing.T) {
	for _, passed := range []bool{false, true} {
		t.Run(map[bool]string{false: "deadline ahead", true: "deadline passed"}[passed], func(t *testing.T) {
			dir := t.TempDir()
			h, c, n, operator, _ := actuatorHub(t, dir)
			r := c.do("POST", "/api/v1/actuators/ESP_A1B2C3/5/command", operator, map[string]any{"command": "ON", "duration": 20})
			if r.status != 200 {
				stopHub(t, h)
				t.Fatalf("command: %d %s", r.status, r.raw)
			}
			on := n.next(t, 5*time.Second)
			deadline := on.at.Add(20 * second)
			pollJSON(t, c, operator, "/api/v1/actuators/ESP_A1B2C3/5/status", statusIsState("on"))
			stopHub(t, h)
			if passed {
				time.Sleep(time.Until(deadline) + 5*second)
			}

			h2 := startHub(t, Config{DataDir: dir, ActuatorSecond: second, BcryptCost: 4})
			defer stopHub(t, h2)
			dev := mustDial(t, h2.MQTTAddr(), "ESP_A1B2C3")
			n2 := startNode(t, dev, "ESP_A1B2C3")
			heard := time.Now()
			if err := dev.publish("kaiser/god/esp/ESP_A1B2C3/system/heartbeat", heartbeat(300), false); err != nil {
				t.Fatal(err)
			}

			off := n2.next(t, 5*time.Second)
			if off.name() != "OFF" {
				t.Fatalf("after the restart the device got %+v", off.body)
			}
			if !passed && (off.at.Before(deadline.Add(-10*time.Millisecond)) || off.at.After(deadline.Add(10*second))) {
				t.Fatalf("the OFF came at %s, the original deadline is %s", off.at, deadline)
			}
			// At once: when the device is heard, not a retry period later.
			if passed && off.at.Sub(heard) > 10*second {
				t.Fatalf("the passed auto-off came %s after the device was heard", off.at.Sub(heard))
			}
			if len(h2.Actuators.ByDevice("ESP_A1B2C3")) != 1 {
				t.Fatal("the actuator was not reloaded")
			}
		})
	}
}
