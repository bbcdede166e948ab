package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/proxy"
)

var _ proxy.StreamObserver = (*Metrics)(nil)

// streamBuckets span a fast first token (a few ms on loopback) to a
// reasoning model thinking for minutes.
var streamBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// failoverReasons are every reason label StreamFailover can be given: the
// faults an error event can stand for, and a stream the upstream broke off.
var failoverReasons = []string{
	classify.KeyPermanent.String(), classify.KeyRateLimited.String(), classify.KeyModel.String(), classify.Unproven.String(),
	classify.TargetError.String(), "stream_reset",
}

func (m *Metrics) registerStreams(reg prometheus.Registerer) {
	m.firstByte = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "stream_first_byte_seconds",
		Help: "Event streams: time from receiving the client request to committing the stream " +
			"(its headers and first bytes going out), retries and the commit window included.",
		Buckets: streamBuckets,
	})
	m.firstToken = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "stream_first_token_seconds",
		Help:    "Event streams: time from receiving the client request to its first generated output going out.",
		Buckets: streamBuckets,
	})
	failovers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "stream_failovers_total",
		Help: "Event streams that failed inside the commit window (an error event, or the upstream broke off " +
			"before any output) and were retried on another key or target, by reason.",
	}, []string{"reason"})
	m.failovers = make(map[string]prometheus.Counter, len(failoverReasons))
	for _, r := range failoverReasons {
		m.failovers[r] = failovers.WithLabelValues(r)
	}
	m.register(reg, m.firstByte, m.firstToken, failovers)
}

// StreamFirstByte records the time to a stream's commit.
func (m *Metrics) StreamFirstByte(d time.Duration) { m.firstByte.Observe(d.Seconds()) }

// StreamFirstToken records the time to a stream's first output.
func (m *Metrics) StreamFirstToken(d time.Duration) { m.firstToken.Observe(d.Seconds()) }

// StreamFailover counts a failover after an in-window failure. A reason
// outside the known set is not recorded, so the label stays bounded.
func (m *Metrics) StreamFailover(reason string) {
	if c, ok := m.failovers[reason]; ok {
		c.Inc()
	}
}
