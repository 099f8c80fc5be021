package broker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Bounds of the broker's log lines.
const (
	// maxLogText bounds every string the broker logs: client ids, topics
	// and error texts come from the network.
	maxLogText = 256
	// logBurst lines with one message are written per logWindow; the rest
	// are counted as suppressed (mochi logs some errors once per message).
	logBurst  = 5
	logWindow = time.Second
	// maxLogKeys bounds the messages whose rate is tracked.
	maxLogKeys = 256
)

// boundedHandler keeps every line the broker and mochi write short and
// rare: mochi logs a whole packet, payload included, when it fails to
// process one (a refused 26.7 MB publish was one 26.7 MB line), so packets
// become a summary, long strings are clipped, and each message is written
// at most logBurst times per logWindow.
type boundedHandler struct {
	next slog.Handler
	rate *lineRate
}

func newBoundedLogger(l *slog.Logger, rate *lineRate) *slog.Logger {
	return slog.New(boundedHandler{next: l.Handler(), rate: rate})
}

func (h boundedHandler) Enabled(ctx context.Context, lvl slog.Level) bool {
	return h.next.Enabled(ctx, lvl)
}

func (h boundedHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.rate.allow(r.Message) {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, clip(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(boundAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h boundedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	bounded := make([]slog.Attr, len(as))
	for i, a := range as {
		bounded[i] = boundAttr(a)
	}
	return boundedHandler{next: h.next.WithAttrs(bounded), rate: h.rate}
}

func (h boundedHandler) WithGroup(name string) slog.Handler {
	return boundedHandler{next: h.next.WithGroup(clip(name)), rate: h.rate}
}

// boundAttr returns a with every string clipped and packets summarised.
func boundAttr(a slog.Attr) slog.Attr {
	a.Key = clip(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, clip(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = boundAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case packets.Packet:
			return slog.Attr{Key: a.Key, Value: packetSummary(&x)}
		case *packets.Packet:
			return slog.Attr{Key: a.Key, Value: packetSummary(x)}
		case []byte:
			return slog.Int(a.Key+"_bytes", len(x))
		case error:
			return slog.String(a.Key, clip(x.Error()))
		}
		return slog.String(a.Key, clip(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// packetSummary describes a packet without its payload.
func packetSummary(pk *packets.Packet) slog.Value {
	if pk == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("type", packets.PacketNames[pk.FixedHeader.Type]),
		slog.String("topic", clip(pk.TopicName)),
		slog.Int("payload_bytes", len(pk.Payload)),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Bool("retain", pk.FixedHeader.Retain),
		slog.Int("packet_id", int(pk.PacketID)),
	)
}

// clip shortens s to maxLogText bytes, saying how long it was.
func clip(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:maxLogText], len(s))
}

// lineRate allows logBurst lines per message per logWindow.
type lineRate struct {
	mu         sync.Mutex
	now        func() time.Time
	windows    map[string]*logWindowCount
	suppressed func() // counts a suppressed line; may be nil
}

type logWindowCount struct {
	start time.Time
	n     int
}

func newLineRate(now func() time.Time) *lineRate {
	return &lineRate{now: now, windows: map[string]*logWindowCount{}}
}

func (lr *lineRate) allow(msg string) bool {
	lr.mu.Lock()
	now := lr.now()
	w := lr.windows[msg]
	if w == nil {
		if len(lr.windows) >= maxLogKeys {
			clear(lr.windows)
		}
		w = &logWindowCount{start: now}
		lr.windows[msg] = w
	}
	if now.Sub(w.start) >= logWindow || now.Before(w.start) {
		w.start, w.n = now, 0
	}
	w.n++
	ok := w.n <= logBurst
	lr.mu.Unlock()
	if !ok && lr.suppressed != nil {
		lr.suppressed()
	}
	return ok
}
