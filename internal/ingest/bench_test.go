package ingest

import (
	"context"
	"fmt"
	"testing"

	"github.com/kaiserhub/kaiser/internal/contract"
)

// BenchmarkQuietFleet is the footprint's pattern: many devices, one
// message each at a time, every queue empty again before the device's next
// message. allocs/op is what the dispatcher allocates per message.
func BenchmarkQuietFleet(b *testing.B) {
	d := New(Config{Workers: 1}, nil, nil)
	done := make(chan struct{}, 1)
	d.Handle(contract.KindHeartbeat, func(context.Context, Message) error {
		done <- struct{}{}
		return nil
	})
	d.Start()
	topics := make([]string, 1000)
	for i := range topics {
		topics[i] = hbTopic(fmt.Sprintf("ESP_%06X", i))
	}
	payload := []byte(`{}`)

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.Submit(topics[i%len(topics)], payload, false, false)
		<-done
	}
	b.StopTimer()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}
