package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StepMetrics are what a leader's executor measures of the steps it
// commits; they count on the node that led while the steps ran.
type StepMetrics struct {
	duration  *prometheus.HistogramVec
	moveBytes prometheus.Counter
}

// NewStepMetrics makes the metrics; register Collectors with the node's
// registry.
func NewStepMetrics() *StepMetrics {
	return &StepMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cnm_action_step_duration_seconds",
			Help:    "Time a node action's step took, from when this node's executor took it up to its commit, by step kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"kind"}),
		moveBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cnm_shard_move_bytes_total",
			Help: "Bytes of shard data copied to their new nodes by the moves this node's executor ran.",
		}),
	}
}

// Collectors are the metrics to register.
func (m *StepMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, m.moveBytes}
}

func (m *StepMetrics) stepDone(kind string, took time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(kind).Observe(took.Seconds())
	}
}

func (m *StepMetrics) moved(bytes int64) {
	if m != nil && bytes > 0 {
		m.moveBytes.Add(float64(bytes))
	}
}
