package sensor

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/kaiserhub/kaiser/internal/device"
)

// An actuator output passes the board rules of docs/domain.md §8.2 in their
// order; the first failing rule gives the reason.
func TestRefusesOutput(t *testing.T) {
	cases := []struct {
		board Board
		gpio  int
		want  string // substring of the reason, "" = allowed
	}{
		{WROOM, 5, ""},
		{WROOM, 40, "outside"},
		{WROOM, 20, "not bonded"},
		{WROOM, 2, "reserved"},
		{WROOM, 34, "input-only"},
		{WROOM, 21, "I2C"},
		{WROOM, 25, ""}, // ADC2 matters to analog sensors only
		{XIAO, 5, "I2C"},
		{XIAO, 22, "outside"},
		{XIAO, 18, "reserved"},
		{XIAO, 7, ""},
	}
	for _, c := range cases {
		t.Run(c.board.Name+"/"+strconv.Itoa(c.gpio), func(t *testing.T) {
			got := c.board.RefusesOutput(c.gpio)
			if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Fatalf("RefusesOutput(%d) = %q, want %q", c.gpio, got, c.want)
			}
		})
	}
}

type claims map[int]string

func (c claims) PinClaim(_ string, gpio int) (string, bool) {
	owner, ok := c[gpio]
	return owner, ok
}

// A pin an actuator owns is refused to a sensor with 409 conflict_type
// actuator (docs/domain.md §8.3); other pins are unaffected.
func TestUpsertRefusesClaimedPins(t *testing.T) {
	f := newFixture(t)
	f.addDevice(esp, device.StatusOnline, "ESP32_WROOM")
	f.svc.SetPinClaims(claims{16: "actuator pump", 17: "the enable pin of valve on GPIO 16"})

	for _, g := range []int{16, 17} {
		_, _, err := f.svc.Upsert(context.Background(), Config{EspID: esp, GPIO: g, SensorType: "flow"})
		var pe *PinError
		if !errors.As(err, &pe) || !pe.Conflict || pe.Type != "actuator" {
			t.Fatalf("GPIO %d: %v", g, err)
		}
	}
	if _, _, err := f.svc.Upsert(context.Background(), Config{EspID: esp, GPIO: 18, SensorType: "flow"}); err != nil {
		t.Fatalf("a free pin: %v", err)
	}
}
