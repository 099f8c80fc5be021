package contract

import (
	"strings"
	"testing"
	"time"
)

// The broadcast example of docs/protocol.md §3.2.9 (with the S4 token) is
// reproduced byte for byte, and the longest device emergency and token
// command the hub sends stay within the devices' 160-byte budget
// (docs/protocol.md §7.4).
func TestEmergencyEncodings(t *testing.T) {
	at := time.Date(2026, 1, 5, 8, 15, 30, 0, time.UTC)
	b := NewBroadcastEmergency("operator_stop", "hub", at)
	b.AuthToken = "Kq7f3a91c2Bd04e6"
	got, err := Marshal(b)
	want := `{"command":"emergency_stop","reason":"operator_stop","issued_by":"hub",` +
		`"timestamp":"2026-01-05T08:15:30Z","auth_token":"Kq7f3a91c2Bd04e6"}`
	if err != nil || string(got) != want {
		t.Errorf("broadcast\n got %s (%v)\nwant %s", got, err, want)
	}

	dev := DeviceEmergency{
		Command:       "clear_emergency",
		AuthToken:     strings.Repeat("E", 31),
		CorrelationID: "em-" + strings.Repeat("c", 36),
	}
	tok := NewSetEmergencyToken("broadcast", strings.Repeat("T", 16), at, "tok-"+strings.Repeat("c", 18))
	for name, v := range map[string]any{"device emergency": dev, "set_emergency_token": tok} {
		p, err := Marshal(v)
		if err != nil || len(p) > 160 {
			t.Errorf("%s: %d bytes (%v), want ≤ 160: %s", name, len(p), err, p)
		}
	}

	got, _ = Marshal(NewSetEmergencyToken("esp", "Kq7f3a91c2Bd04e6", time.Unix(1767600930, 0), "tok-1"))
	want = `{"command":"set_emergency_token","token":"Kq7f3a91c2Bd04e6","token_type":"esp",` +
		`"timestamp":1767600930,"correlation_id":"tok-1"}`
	if string(got) != want {
		t.Errorf("set_emergency_token\n got %s\nwant %s", got, want)
	}
}
