package contract

import (
	"errors"
	"fmt"
	"testing"
)

// The field accessors behind every decoder: aliases in priority order,
// absent and null alike, integers accepted from integral floats, and the
// drop reason naming the field that failed first.
func TestFieldAccessors(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		read    func(d *decoder) any
		want    any
		reason  string
		field   string
	}{
		{
			name:    "required string",
			payload: `{"status":"ok"}`,
			read:    func(d *decoder) any { return required[string](d, "status") },
			want:    "ok",
		},
		{
			name:    "required string missing",
			payload: `{}`,
			read:    func(d *decoder) any { return required[string](d, "status", "state") },
			want:    "",
			reason:  ReasonMissingField,
			field:   "status",
		},
		{
			name:    "null counts as absent",
			payload: `{"status":null}`,
			read:    func(d *decoder) any { return required[string](d, "status") },
			want:    "",
			reason:  ReasonMissingField,
			field:   "status",
		},
		{
			name:    "alias used when the first key is absent",
			payload: `{"free_heap":9}`,
			read:    func(d *decoder) any { return required[int64](d, "heap_free", "free_heap") },
			want:    int64(9),
		},
		{
			name:    "wrong type names the alias present",
			payload: `{"free_heap":"9"}`,
			read:    func(d *decoder) any { return required[int64](d, "heap_free", "free_heap") },
			want:    int64(0),
			reason:  ReasonWrongType,
			field:   "free_heap",
		},
		{
			name:    "integral float is an integer",
			payload: `{"ts":61.0}`,
			read:    func(d *decoder) any { return required[int64](d, "ts") },
			want:    int64(61),
		},
		{
			name:    "fraction is not an integer",
			payload: `{"ts":61.5}`,
			read:    func(d *decoder) any { return required[int64](d, "ts") },
			want:    int64(0),
			reason:  ReasonWrongType,
			field:   "ts",
		},
		{
			name:    "number out of float range",
			payload: `{"v":1e400}`,
			read:    func(d *decoder) any { return required[float64](d, "v") },
			want:    0.0,
			reason:  ReasonWrongType,
			field:   "v",
		},
		{
			name:    "optional absent is nil",
			payload: `{}`,
			read:    func(d *decoder) any { return optional[bool](d, "time_valid") == nil },
			want:    true,
		},
		{
			name:    "optional present",
			payload: `{"time_valid":false}`,
			read:    func(d *decoder) any { return *optional[bool](d, "time_valid") },
			want:    false,
		},
		{
			name:    "optional of the wrong type fails",
			payload: `{"time_valid":"yes"}`,
			read:    func(d *decoder) any { return optional[bool](d, "time_valid") == nil },
			want:    true,
			reason:  ReasonWrongType,
			field:   "time_valid",
		},
		{
			name:    "requiredIf not needed",
			payload: `{}`,
			read:    func(d *decoder) any { return requiredIf[string](d, false, "message") },
			want:    "",
		},
		{
			name:    "requiredIf needed",
			payload: `{}`,
			read:    func(d *decoder) any { return requiredIf[string](d, true, "message") },
			want:    "",
			reason:  ReasonMissingField,
			field:   "message",
		},
		{
			name:    "the first error wins",
			payload: `{"b":1}`,
			read: func(d *decoder) any {
				required[string](d, "a")
				return required[int64](d, "b")
			},
			want:   int64(0),
			reason: ReasonMissingField,
			field:  "a",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decode([]byte(c.payload), c.read)
			if got != c.want {
				t.Errorf("value %#v, want %#v", got, c.want)
			}
			if c.reason == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != c.reason || de.Field != c.field {
				t.Fatalf("error %v, want %s on %s", err, c.reason, c.field)
			}
		})
	}
}

// Actuator status: the state word or boolean, and the level as pwm or a
// mock's value on either scale; want is "state pwm", "state fraction" or
// the drop reason.
func TestActuatorStateAndLevel(t *testing.T) {
	tp, _ := ParseTopic("kaiser/god/esp/ESP_A1B2C3/actuator/5/status")
	const head = `{"ts":1,"type":"pump",`
	cases := []struct{ name, payload, want string }{
		{"boolean on", head + `"state":true,"pwm":255}`, "on pwm 255"},
		{"word in capitals", head + `"state":"PWM","pwm":128}`, "pwm pwm 128"},
		{"unknown word", head + `"state":"half","pwm":1}`, ReasonWrongType},
		{"number state", head + `"state":1,"pwm":1}`, ReasonWrongType},
		{"missing state", head + `"pwm":1}`, ReasonMissingField},
		{"value as fraction", head + `"state":"on","value":1.0}`, "on fraction 1"},
		{"value on the device scale", head + `"state":"on","value":200}`, "on pwm 200"},
		{"integer one is on the device scale", head + `"state":"on","value":1}`, "on pwm 1"},
		{"neither pwm nor value", head + `"state":"on"}`, ReasonMissingField},
		{"pwm above 255", head + `"state":"on","pwm":256}`, ReasonWrongType},
		{"value not a level", head + `"state":"on","value":2.5}`, ReasonWrongType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := DecodeActuatorStatus(tp, []byte(c.payload))
			var got string
			var de *DecodeError
			switch {
			case errors.As(err, &de):
				got = de.Reason
			case err != nil:
				t.Fatalf("error without drop reason: %v", err)
			case a.PWM != nil && a.ValueFraction == nil:
				got = fmt.Sprintf("%s pwm %d", a.State, *a.PWM)
			case a.PWM == nil && a.ValueFraction != nil:
				got = fmt.Sprintf("%s fraction %g", a.State, *a.ValueFraction)
			default:
				t.Fatalf("pwm %v and fraction %v", a.PWM, a.ValueFraction)
			}
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}
