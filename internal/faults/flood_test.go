package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawConnect opens a plain MQTT 3.1.1 session by hand, so that the test
// can then write packets no client library would send.
func rawConnect(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60})
	vh.Write([]byte{byte(len(id) >> 8), byte(len(id))})
	vh.WriteString(id)
	if _, err := conn.Write(append(append([]byte{0x10}, remainingLength(vh.Len())...), vh.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK of %s: % x %v", id, ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

// remainingLength is MQTT's variable-length encoding of n.
func remainingLength(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// rawPublish writes a QoS 0 PUBLISH.
func rawPublish(conn net.Conn, topic string, payload []byte, retain bool) error {
	kind := byte(0x30)
	if retain {
		kind |= 0x01
	}
	packet := append([]byte{kind}, remainingLength(2+len(topic)+len(payload))...)
	packet = append(packet, byte(len(topic)>>8), byte(len(topic)))
	packet = append(append(packet, topic...), payload...)
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := conn.Write(packet)
	return err
}

// rawPing sends PINGREQ and waits for PINGRESP.
func rawPing(t *testing.T, conn net.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp := make([]byte, 2)
	if _, err := io.ReadFull(conn, resp); err != nil || resp[0] != 0xd0 {
		t.Fatalf("PINGRESP: % x %v", resp, err)
	}
}

// hugePublish declares a QoS 0 PUBLISH of size bytes and streams it until
// the broker closes the connection; it returns how much was written.
func hugePublish(conn net.Conn, topic string, size int) int {
	header := append([]byte{0x30}, remainingLength(2+len(topic)+size)...)
	header = append(header, byte(len(topic)>>8), byte(len(topic)))
	header = append(header, topic...)
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	written, err := conn.Write(header)
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for err == nil && written < size {
		var n int
		n, err = conn.Write(chunk)
		written += n
	}
	return written
}

// Promise: neither oversized packets nor a retained flood take the hub's
// memory beyond its bounds (docs/decisions/0012-mqtt-door.md), nor its
// console beyond a bounded line per refusal, and it stays ready. Before the
// door, four 100 MB publishes took it to 4.97 GB and 150 retained 1 MB
// messages added 330 MB that stayed.
func TestOversizedAndRetainedFloodsKeepMemoryBounded(t *testing.T) {
	h := startHub(t, t.TempDir())
	h.setupAdmin()
	before := h.rss()

	var wg sync.WaitGroup
	written := make([]int, 4)
	for i := range written {
		conn := rawConnect(t, h.mqtt, fmt.Sprintf("flood-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			written[i] = hugePublish(conn, "kaiser/flood/big", 10<<20)
		}()
	}
	wg.Wait()
	for i, n := range written {
		if n >= 10<<20 {
			t.Errorf("publisher %d wrote its whole 10 MB packet: the broker read it", i)
		}
	}
	afterBig := h.rss()

	// A client may write only its own device topics: the flood is one
	// device id retaining junk on new topics at QoS 0, which the hub drops
	// as readings and the broker keeps or refuses within its bounds. Bounded
	// means flat: three rounds of 45 MB each, and the last leaves RSS where
	// the first did (an unbounded store grows by the 45 MB of each round).
	const flooderID = "ESP_F100D0"
	flooder := rawConnect(t, h.mqtt, flooderID)
	payload := bytes.Repeat([]byte("R"), 15<<10)
	const perRound, rounds = 3000, 3
	rss := make([]int64, rounds)
	for round := range rounds {
		for i := range perRound {
			topic := fmt.Sprintf("kaiser/god/esp/%s/sensor/%d/data", flooderID, round*perRound+i)
			if err := rawPublish(flooder, topic, payload, true); err != nil {
				t.Fatalf("retained publish %d of round %d: %v", i, round, err)
			}
		}
		rawPing(t, flooder) // after every packet before it was handled
		rss[round] = h.rss()
	}

	const mib = 1 << 20
	t.Logf("RSS: %d MiB at rest, %d MiB after four 10 MB publishes, %v bytes after rounds of %d × 15 KiB retained",
		before/mib, afterBig/mib, rss, perRound)
	if afterBig-before > 32*mib {
		t.Errorf("four refused 10 MB publishes grew RSS by %d MiB", (afterBig-before)/mib)
	}
	if grew := rss[rounds-1] - rss[0]; grew > 40*mib {
		t.Errorf("retained floods past a 16 MiB store kept growing RSS: +%d MiB after the first round", grew/mib)
	}
	if h.ready() != http.StatusOK {
		t.Error("the hub is not ready after the floods")
	}
	h.stop()
	longest, total := consoleLines(t, h.out.Name())
	if longest > 4<<10 || total > 4*mib {
		t.Errorf("console: longest line %d bytes, %d bytes in all", longest, total)
	}
}

// consoleLines returns the longest line and the total size of a console file.
func consoleLines(t *testing.T, path string) (longest, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		total += len(line)
		longest = max(longest, len(strings.TrimRight(line, "\n")))
		if err != nil {
			return longest, total
		}
	}
}
