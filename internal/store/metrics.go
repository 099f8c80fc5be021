package store

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// WriterMetrics are the Prometheus instruments of one group-commit writer,
// the same for SQLite's and PostgreSQL's, so one dashboard reads either
// store.
type WriterMetrics struct {
	BatchSize  prometheus.Histogram
	CommitTime prometheus.Histogram
	Errors     prometheus.Counter
	queueDepth atomic.Pointer[func() float64]
}

// SetQueueDepth makes the queue-depth gauge read f (the writer's own
// count; 0 until set).
func (m *WriterMetrics) SetQueueDepth(f func() float64) { m.queueDepth.Store(&f) }

// NewWriterMetrics registers the metrics of one database's writer on reg,
// labelled db="main" or db="control".
func NewWriterMetrics(reg prometheus.Registerer, db string) *WriterMetrics {
	labels := prometheus.Labels{"db": db}
	m := &WriterMetrics{
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "kaiser_store_batch_ops",
			Help:        "Operations committed per group-commit transaction.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 4, 8),
		}),
		CommitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "kaiser_store_commit_seconds",
			Help:        "Duration of group-commit transactions.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "kaiser_store_write_errors_total",
			Help:        "Store write operations that failed.",
			ConstLabels: labels,
		}),
	}
	reg.MustRegister(m.BatchSize, m.CommitTime, m.Errors)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "kaiser_store_queue_depth",
		Help:        "Operations waiting for the store writer.",
		ConstLabels: labels,
	}, func() float64 {
		if f := m.queueDepth.Load(); f != nil {
			return (*f)()
		}
		return 0
	}))
	return m
}
