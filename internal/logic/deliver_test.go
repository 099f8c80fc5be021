package logic

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaiserhub/kaiser/internal/event"
	"github.com/kaiserhub/kaiser/internal/notify"
)

// Webhooks and e-mail go over real sockets: these tests use the wall clock
// with short back-offs and wait for the execution's logic_execution event.

// awaitAction waits for the logic_execution event of the action at index.
func (w *world) awaitAction(index int) event.LogicExecution {
	w.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-w.sub.C:
			if x := e.Data.(event.LogicExecution); x.Action.Index == index {
				return x
			}
		case <-deadline:
			w.t.Fatalf("no logic_execution event for action %d", index)
		}
	}
}

func notifyRule(channel, target string) string {
	return `{"name":"Hot mail",
	"conditions":[{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"operator":">","value":30}],
	"actions":[{"type":"notification","channel":"` + channel + `","target":"` + target + `","severity":"critical",
	"message_template":"{rule_name}: {sensor_value}"}]}`
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	var calls atomic.Int32
	var got webhookPayload
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			rw.WriteHeader(http.StatusBadGateway)
			return
		}
		mu.Lock()
		_ = json.NewDecoder(r.Body).Decode(&got)
		mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	w := newWorld(t, Options{WebhookBackoff: []time.Duration{time.Millisecond, time.Millisecond}})
	defer w.close()
	w.rule(notifyRule("webhook", srv.URL+"/hook"))
	w.reading(21, "sht31_temp", 31.5)
	x := w.awaitAction(0)
	if x.Action.Status != StatusSucceeded || calls.Load() != 3 {
		t.Fatalf("result %+v after %d calls", x, calls.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Body != "Hot mail: 31.5" || got.Source != "logic_engine" || got.Severity != "critical" ||
		got.Metadata["rule_name"] != "Hot mail" {
		t.Fatalf("payload %+v", got)
	}
}

func TestWebhookFailsAfterThreeAttempts(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		rw.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	w := newWorld(t, Options{WebhookBackoff: []time.Duration{time.Millisecond, time.Millisecond}})
	defer w.close()
	id := w.rule(notifyRule("webhook", srv.URL))
	w.reading(21, "sht31_temp", 31.5)
	if x := w.awaitAction(0); x.Action.Status != StatusFailed || x.Action.Code != codeDelivery || calls.Load() != 3 {
		t.Fatalf("result %+v after %d calls", x, calls.Load())
	}
	if xs := w.history(id); xs[0].Success || xs[0].TerminalReason != codeDelivery {
		t.Fatalf("history %+v", xs[0])
	}
}

// smtpSink is a minimal SMTP server that keeps the messages it receives.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	rcpt []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	go s.serve()
	t.Cleanup(func() { _ = ln.Close() })
	return s
}

func (s *smtpSink) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.session(c)
	}
}

func (s *smtpSink) session(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	say("220 sink ready")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 sink")
		case strings.HasPrefix(cmd, "MAIL FROM"):
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO"):
			s.mu.Lock()
			s.rcpt = append(s.rcpt, strings.TrimSpace(line[len("RCPT TO:"):]))
			s.mu.Unlock()
			say("250 ok")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, b.String())
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

func TestEmailThroughTheRelay(t *testing.T) {
	sink := newSMTPSink(t)
	w := newWorld(t, Options{SMTP: SMTP{Addr: sink.ln.Addr().String(), From: "hub@greenhouse.example"}})
	defer w.close()
	w.rule(notifyRule("email", "grower@greenhouse.example"))
	w.reading(21, "sht31_temp", 31.5)
	if x := w.awaitAction(0); x.Action.Status != StatusSucceeded {
		t.Fatalf("result %+v", x)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.msgs) != 1 || len(sink.rcpt) != 1 || !strings.Contains(sink.rcpt[0], "grower@greenhouse.example") {
		t.Fatalf("sink got %v to %v", sink.msgs, sink.rcpt)
	}
	m := sink.msgs[0]
	for _, want := range []string{"Subject: [critical] Hot mail\r\n", "To: grower@greenhouse.example\r\n",
		"\r\n\r\nHot mail: 31.5\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("message lacks %q:\n%s", want, m)
		}
	}
}

func TestEmailWithoutRelayFails(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	w.rule(notifyRule("email", "grower@greenhouse.example"))
	w.reading(21, "sht31_temp", 31.5)
	if x := w.awaitAction(0); x.Action.Status != StatusFailed || x.Action.Code != codeEmailDisabled {
		t.Fatalf("result %+v", x)
	}
}

func TestMessageHeadersCannotBeInjected(t *testing.T) {
	m := string(message("hub@x.example", "a@x.example", notifySpec("Fan\r\nBcc: evil@x.example", "body")))
	if strings.Contains(m, "\r\nBcc:") {
		t.Fatalf("header injected:\n%s", m)
	}
}

func notifySpec(title, body string) notify.Spec {
	return notify.Spec{Title: title, Body: body, Severity: "info"}
}
