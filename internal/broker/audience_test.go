package broker

import "testing"

// The processed echo is skipped while nobody subscribes to it; a client
// that subscribes hears the next one (the answer is not kept past the
// subscription).
func TestHasSubscribersFollowsSubscriptions(t *testing.T) {
	e, _ := startBroker(t, Config{})
	topic := "kaiser/god/esp/ESP_AUD001/sensor/4/processed"

	if e.HasSubscribers(topic) {
		t.Fatal("a topic nobody subscribes to has subscribers")
	}
	if e.HasSubscribers(topic) {
		t.Fatal("the remembered answer changed by itself")
	}

	rc, code := dialRaw(t, e.Addr(), "ESP_AUD001")
	if code != 0 {
		t.Fatalf("connack %d", code)
	}
	rc.send(t, subscribePacket("kaiser/god/esp/ESP_AUD001/sensor/+/processed", 0))
	rc.awaitSuback(t)

	if !e.HasSubscribers(topic) {
		t.Fatal("a subscribed topic has no subscribers: the subscription did not reset the answer")
	}
	if e.HasSubscribers("kaiser/god/esp/ESP_AUD002/sensor/4/processed") {
		t.Fatal("another device's topic has subscribers")
	}
}
