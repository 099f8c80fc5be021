package contract

import (
	"slices"
	"testing"
)

// The shared and the ordered sets split the normative subscription set:
// every filter in exactly one of them, only readings and diagnostics shared.
func TestSubscriptionSplit(t *testing.T) {
	ordered := OrderedSubscriptions()
	if len(ordered)+len(SharedSubscriptions) != len(HubSubscriptions) {
		t.Fatalf("%d ordered + %d shared != %d", len(ordered), len(SharedSubscriptions), len(HubSubscriptions))
	}
	for _, f := range HubSubscriptions {
		if slices.Contains(ordered, f) == slices.Contains(SharedSubscriptions, f) {
			t.Fatalf("%s is in both sets or in none", f)
		}
	}
	for _, f := range SharedSubscriptions {
		topic, err := ParseTopic(map[string]string{
			"kaiser/+/esp/+/system/diagnostics": "kaiser/god/esp/ESP_1/system/diagnostics",
			"kaiser/+/esp/+/sensor/+/data":      "kaiser/god/esp/ESP_1/sensor/4/data",
		}[f])
		if err != nil || (topic.Kind != KindSensorData && topic.Kind != KindDiagnostics) {
			t.Fatalf("shared filter %s: %v %v", f, topic.Kind, err)
		}
	}
	if got := SharedFilter("kaiser/+/esp/+/sensor/+/data"); got != "$share/kaiser/kaiser/+/esp/+/sensor/+/data" {
		t.Fatal(got)
	}
}
