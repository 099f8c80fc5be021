package sim

import (
	"testing"
)

// The firmware's substring parser of commands (docs/protocol.md §3.2.1).
func TestFieldOf(t *testing.T) {
	cases := []struct {
		text, key, want string
	}{
		{`{"command":"ON","value":1.0}`, "command", "ON"},
		{`{"command": "ON"}`, "command", "ON"},
		{`{"value":0.25,"duration":7}`, "value", "0.25"},
		{`{"duration":7}`, "duration", "7"},
		{`{"value": 1 }`, "value", "1"},
		{`{"x":1}`, "value", ""},
		{`{"command":"ON`, "command", ""},
		{`{"meta":{"value":9},"value":1}`, "value", `9}`}, // the first match wins (J2)
	}
	for _, c := range cases {
		if got := fieldOf(c.text, c.key); got != c.want {
			t.Errorf("fieldOf(%s, %s) = %q, want %q", c.text, c.key, got, c.want)
		}
	}
}

func TestArduinoConversions(t *testing.T) {
	floats := []struct {
		in   string
		want string
	}{
		{"1.0", "1.000"}, {"0.3333", "0.333"}, {"abc", "0.000"}, {"", "0.000"}, {"-0.5", "-0.500"},
		{"2.5e-1", "0.250"}, {"7x", "7.000"}, {"nan", "nan"}, {"1e50", "inf"},
	}
	for _, c := range floats {
		if got := threeDecimals(toFloat(c.in)); got != c.want {
			t.Errorf("String(toFloat(%q), 3) = %s, want %s", c.in, got, c.want)
		}
	}
	ints := []struct {
		in   string
		want uint32
	}{
		{"20", 20}, {"-1", 4294967295}, {"20.9", 20}, {"x", 0}, {"99999999999", 2147483647}, {" 5", 5},
	}
	for _, c := range ints {
		if got := toUint32(c.in); got != c.want {
			t.Errorf("toUint32(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	if got := toUint8("300"); got != 44 {
		t.Errorf("toUint8(300) = %d, want 44", got)
	}
}

// docs/protocol.md §1.6: 16 bytes per member or element plus each string's length + 1.
func TestPoolCost(t *testing.T) {
	cases := []struct {
		text string
		cost int
	}{
		{`1`, 0},
		{`"x"`, 2},
		{`{"a":1}`, 16 + 2},
		{`{"command":"emergency_stop"}`, 16 + 8 + 15},
		{`[1,2]`, 32},
		{`{"a":[true]}`, 16 + 2 + 16},
	}
	for _, c := range cases {
		v, ok := parseInPool([]byte(c.text), c.cost)
		if !ok || poolCost(v) != c.cost {
			t.Errorf("%s costs %d, want %d (fits %t)", c.text, poolCost(v), c.cost, ok)
		}
		if _, ok := parseInPool([]byte(c.text), c.cost-1); ok && c.cost > 0 {
			t.Errorf("%s fits a pool of %d", c.text, c.cost-1)
		}
	}
	if _, ok := parseInPool([]byte(`{`), 256); ok {
		t.Error("invalid JSON parsed")
	}
}

func TestParseQuirks(t *testing.T) {
	cases := []struct {
		in   string
		want Quirks
	}{
		{"default", Quirks{
			Retain:             true,
			NoResubscribe:      true,
			LateFirstHeartbeat: true,
			EmptyKaiserID:      true,
			EmergencyRouting:   true,
			IgnoreDuration:     true,
			TwoStatuses:        true,
		}},
		{"all", Quirks{
			Retain:             true,
			NoResubscribe:      true,
			LateFirstHeartbeat: true,
			EmptyKaiserID:      true,
			EmergencyRouting:   true,
			IgnoreDuration:     true,
			TwoStatuses:        true,
			NTPZero:            true,
		}},
		{"none", Quirks{Seq: true}},
		{"two-statuses, ignore-duration", Quirks{TwoStatuses: true, IgnoreDuration: true}},
	}
	for _, c := range cases {
		got, err := ParseQuirks(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseQuirks(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if _, err := ParseQuirks("retain,bogus"); err == nil {
		t.Error("an unknown quirk was accepted")
	}
}
