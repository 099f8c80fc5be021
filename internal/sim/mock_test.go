package sim

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The debug operations of mock devices set state directly and publish a
// status, with the device types the firmware knows.
func TestSetActuator(t *testing.T) {
	cases := []struct {
		name, typ string
		on        bool
		value     float64
		wantType  string
		pwm       int
	}{
		{"digital is a relay", "digital", true, 1, "relay", 255},
		{"servo is pwm", "servo", true, 0.5, "pwm", 128},
		{"pwm on without value is full duty", "pwm", true, 0, "pwm", 255},
		{"valve half open", "valve", true, 0.5, "valve", 127},
		{"pump off", "pump", false, 0, "pump", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := boot(t, "none")
				if !r.node.SetActuator(12, c.typ, c.on, c.value, true) {
					t.Fatal("node not running")
				}
				synctest.Wait()
				r.expect(r.status(12, c.wantType, c.pwm > 0, c.pwm, 0, "normal"))
				if s := r.state(12); s.Type != c.wantType || s.PWM != c.pwm {
					t.Fatalf("state %+v", s)
				}
				hb, _ := r.node.HeartbeatNow()
				if hb["actuator_count"] != 1 {
					t.Fatalf("heartbeat counts %v actuators", hb["actuator_count"])
				}
			})
		})
	}
}

// The mock's own emergency state: a stop latches with alert and status per
// actuator and reports SAFE_MODE; the clear publishes a status each.
func TestMockEmergencyStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "none")
		onePerType(r)
		r.node.EmergencyStop(true)
		synctest.Wait()
		r.expect(r.stopped()...)
		if hb, _ := r.node.HeartbeatNow(); hb["state"] != "SAFE_MODE" {
			t.Fatalf("heartbeat state %v", hb["state"])
		}
		r.node.EmergencyStop(false)
		synctest.Wait()
		r.expect(
			r.status(5, "pump", false, 0, 0, "normal"),
			r.status(16, "relay", false, 0, 0, "normal"),
			r.status(18, "pwm", false, 0, 0, "normal"),
			r.status(25, "valve", false, 0, 0, "normal"),
		)
		if hb, _ := r.node.HeartbeatNow(); hb["state"] != "OPERATIONAL" {
			t.Fatalf("heartbeat state %v", hb["state"])
		}
	})
}

// Observe sees every message in both directions in order, and Actuators
// still answers once the node has stopped.
func TestObserveAndStoppedNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		q, _ := ParseQuirks("default")
		n := NewNode(NodeConfig{
			EspID:  testID,
			Quirks: q,
			Clock:  NewClock(1),
			Observe: func(m Message) {
				mu.Lock()
				defer mu.Unlock()
				if !strings.HasSuffix(m.Topic, "/heartbeat") {
					seen = append(seen, m.Direction+" "+m.Topic[strings.LastIndex(m.Topic, "/")+1:])
				}
			},
		})
		net := &fakeNet{}
		n.dial = net.dial
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = n.Run(ctx) }()
		synctest.Wait()
		net.deliver(dev("config"), []byte(`{"sensors":[],"actuators":[{"gpio":5,"actuator_type":"pump","actuator_name":"p"}]}`))
		synctest.Wait()
		cancel()
		<-n.Stopped()
		mu.Lock()
		got := strings.Join(seen, ",")
		mu.Unlock()
		if want := "in config,out config_response,out status,out config_response"; got != want {
			t.Fatalf("observed %s, want %s", got, want)
		}
		if s := n.Actuators(); len(s) != 1 || s[0].GPIO != 5 {
			t.Fatalf("actuators of the stopped node: %+v", s)
		}
		if msgs := n.Messages(10); len(msgs) != 4 || msgs[0].Topic != "kaiser//esp/"+testID+"/config_response" {
			t.Fatalf("message log %+v", msgs)
		}
	})
}

// U3: statuses published while the connection is down are buffered and
// flushed in order after the reconnect.
func TestStatusesBufferedWhileDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "default")
		r.configure(item(5, "pump"))
		r.take()
		r.net.mu.Lock()
		r.net.refuse = true
		r.net.mu.Unlock()
		r.node.mu.Lock()
		w := r.node.wire
		r.node.mu.Unlock()
		w.Kill()
		synctest.Wait()
		r.wait(30 * time.Second) // the periodic status, buffered
		r.expect()
		r.net.mu.Lock()
		r.net.refuse = false
		r.net.mu.Unlock()
		r.wait(time.Minute) // the reconnect backoff
		got := r.take()
		if len(got) == 0 || got[0] != strings.Replace(r.status(5, "pump", false, 0, 0, "normal"),
			`"ts":`+itoa64(now()), `"ts":`+itoa64(t0+30), 1) {
			t.Fatalf("after the reconnect: %v", got)
		}
	})
}

// A dropped link keeps the node offline, without a reboot, until it is
// restored: no reconnect meanwhile, statuses buffered, then one reconnect
// that subscribes again (without Q3) and flushes them, uptime running on.
func TestDropAndRestoreLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := boot(t, "two-statuses")
		r.configure(item(5, "pump"))
		r.take()
		r.net.mu.Lock()
		subs := len(r.net.subs)
		r.net.mu.Unlock()

		r.node.DropLink()
		r.wait(10 * time.Minute)
		r.net.mu.Lock()
		resubscribed := len(r.net.subs) != subs
		r.net.mu.Unlock()
		if resubscribed || r.node.Stats.Reconnects.Load() != 0 {
			t.Fatalf("reconnected while the link was down (%d reconnects)", r.node.Stats.Reconnects.Load())
		}
		r.expect()

		r.node.RestoreLink()
		r.wait(time.Second)
		r.net.mu.Lock()
		added := len(r.net.subs) - subs
		r.net.mu.Unlock()
		if added != 8 || r.node.Stats.Reconnects.Load() != 1 {
			t.Fatalf("after the restore: %d filters subscribed, %d reconnects", added, r.node.Stats.Reconnects.Load())
		}
		got := r.take()
		if len(got) < 20 || !strings.HasPrefix(got[0], "actuator/5/status") {
			t.Fatalf("buffered statuses after the restore: %d, first %v", len(got), got)
		}
		hb, _ := r.node.HeartbeatNow()
		if up := hb["uptime"].(int64); up < 600 {
			t.Fatalf("uptime %d after the restore: the node rebooted", up)
		}
	})
}
