package sim

import (
	"strings"
	"testing"
)

// The credentials file is the hub's replies appended: a later reply for a
// device (a rotation) wins, a missing username is the device id, and an
// object without device id or password is refused with its position.
func TestReadCredentials(t *testing.T) {
	in := `{"success":true,"device_id":"ESP_A1B2C3","username":"ESP_A1B2C3","password":"OLD"}
{"success":true,"device_id":"ESP_D4E5F6","password":"P2"}{"device_id":"ESP_A1B2C3","username":"ESP_A1B2C3","password":"NEW"}
`
	got, err := ReadCredentials(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["ESP_A1B2C3"] != (Credential{"ESP_A1B2C3", "NEW"}) ||
		got["ESP_D4E5F6"] != (Credential{"ESP_D4E5F6", "P2"}) {
		t.Fatalf("read %+v", got)
	}
	for _, bad := range []string{`{"device_id":"ESP_A1B2C3"}`, `{"password":"x"}`, `{"device_id":`} {
		if _, err := ReadCredentials(strings.NewReader(`{"device_id":"E","password":"p"}` + bad)); err == nil ||
			!strings.Contains(err.Error(), "object 2") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
