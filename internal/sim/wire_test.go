package sim

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/broker"
)

// readyLog signals once the boot log shows the actuator system ready, which
// the node prints after its MQTT connect and subscriptions.
type readyLog struct {
	once  sync.Once
	ready chan struct{}
}

func (l *readyLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "Phase 5: Actuator System READY") {
		l.once.Do(func() { close(l.ready) })
	}
	return len(p), nil
}

// Over real MQTT through the hub's embedded broker: a baseline node
// answers a config and a command with the retained status → response →
// status of Q1 and Q16.
func TestNodeOverEmbeddedBroker(t *testing.T) {
	b, err := broker.NewEmbedded(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	type got struct {
		topic, payload string
		retain         bool
	}
	msgs := make(chan got, 64)
	filters := []string{
		"kaiser/+/esp/+/actuator/+/status",
		"kaiser/+/esp/+/actuator/+/response",
		"kaiser/+/esp/+/config_response",
	}
	err = b.Subscribe(filters, func(topic string, payload []byte, retain, _ bool) {
		msgs <- got{topic, string(payload), retain}
	})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := ParseQuirks("default")
	log := &readyLog{ready: make(chan struct{})}
	n := NewNode(NodeConfig{
		EspID:   testID,
		Broker:  b.Addr(),
		Quirks:  q,
		BootLog: log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-n.Stopped() }()
	go func() { _ = n.Run(ctx) }()
	select {
	case <-log.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the node never connected")
	}

	root := "kaiser//esp/" + testID + "/"
	publish := func(suffix, payload string) {
		if err := b.Publish(ctx, root+suffix, []byte(payload), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	next := func() got {
		select {
		case m := <-msgs:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no message within 5 s")
			return got{}
		}
	}
	publish("config", `{"sensors":[],"actuators":[{"gpio":5,"actuator_type":"pump","actuator_name":"p"}]}`)
	for _, want := range []string{"config_response", "actuator/5/status", "config_response"} {
		if m := next(); m.topic != root+want || !m.retain {
			t.Fatalf("got %+v, want %s retained", m, want)
		}
	}
	publish("actuator/5/command", `{"command":"ON","value":1.0,"duration":20,"timestamp":1,"correlation_id":"c"}`)
	for _, want := range []string{"actuator/5/status", "actuator/5/response", "actuator/5/status"} {
		m := next()
		if m.topic != root+want || !m.retain {
			t.Fatalf("got %+v, want %s retained", m, want)
		}
		if strings.HasSuffix(want, "status") && !strings.Contains(m.payload, `"state":true,"pwm":255`) {
			t.Fatalf("status %s", m.payload)
		}
	}
	if s := n.Actuators(); len(s) != 1 || !s[0].On {
		t.Fatalf("actuators %+v", s)
	}
}
