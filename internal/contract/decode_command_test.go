package contract

import "testing"

// A newer firmware's command answer without `status` decodes, and a
// payload without `command` is a missing field.
func TestDecodeSystemCommandResult(t *testing.T) {
	tp, err := ParseTopic("kaiser/god/esp/ESP_A1B2C3/system/command/response")
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeSystemCommandResult(tp, []byte(`{"command":"set_emergency_token","success":true,"ts":1767600930}`))
	if err != nil || r.Command != "set_emergency_token" || r.Success == nil || !*r.Success || r.EspID != "ESP_A1B2C3" {
		t.Fatalf("decoded %+v, %v", r, err)
	}
	r, err = DecodeSystemCommandResult(tp, []byte(`{"command":"set_emergency_token","success":false,"error":"bad token"}`))
	if err != nil || *r.Success || r.Message != "bad token" {
		t.Fatalf("failure answer decoded %+v, %v", r, err)
	}
	if _, err := DecodeSystemCommandResult(tp, []byte(`{"status":"factory_reset_initiated"}`)); !isDecodeError(err) {
		t.Fatalf("answer without command: %v", err)
	}
}
