package hub

// hubQueues are the depths of the hub's internal queues for
// GET /health/detailed (docs/api.md §13). The health routes are registered
// before the ingest pipeline exists, so it looks the parts up when asked.
type hubQueues struct{ h *Hub }

// QueueDepths names each queue: the ingest pipeline (queued and in flight),
// the reading sink, and the writers of the two database files.
func (q hubQueues) QueueDepths() map[string]int {
	out := map[string]int{}
	if q.h.Ingest != nil {
		out["ingest"] = q.h.Ingest.Pending()
	}
	if q.h.Readings != nil {
		out["readings"] = q.h.Readings.Depth()
	}
	out["store_main"], out["store_control"] = q.h.Store.WriterDepths()
	return out
}
