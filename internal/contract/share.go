package contract

// ShareGroup is the MQTT 5 shared-subscription group of the hub's replicas on
// an external broker: `$share/kaiser/{filter}` (docs/architecture.md, Beyond
// one machine).
const ShareGroup = "kaiser"

// SharedSubscriptions are the filters of HubSubscriptions whose messages no
// order ties to a device's other messages: readings and diagnostics. On an
// external broker they are subscribed through ShareGroup, so that replicas
// split the bulk of the inbound load.
var SharedSubscriptions = []string{
	"kaiser/+/esp/+/system/diagnostics",
	"kaiser/+/esp/+/sensor/+/data",
}

// OrderedSubscriptions are the rest of HubSubscriptions: heartbeats, wills,
// statuses, responses, alerts and acks, which one subscriber must handle in
// arrival order (docs/protocol.md §5.2 step 3), so never through a shared
// subscription.
func OrderedSubscriptions() []string {
	shared := map[string]bool{}
	for _, f := range SharedSubscriptions {
		shared[f] = true
	}
	var out []string
	for _, f := range HubSubscriptions {
		if !shared[f] {
			out = append(out, f)
		}
	}
	return out
}

// SharedFilter is filter subscribed through ShareGroup.
func SharedFilter(filter string) string { return "$share/" + ShareGroup + "/" + filter }
