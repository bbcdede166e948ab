// Package metrics exposes gpt-load's Prometheus metrics. Its labels are
// bounded by configuration (targets, status classes, outcomes, states):
// never a key, never anything a client controls.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

const namespace = "gpt_load"

// noTarget labels requests answered before any target was chosen (no
// usable key, concurrency limit, body too large).
const noTarget = "none"

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// outcomes are the attempt outcome labels, indexed by classify.Fault.
var outcomes = [...]classify.Fault{
	classify.Success, classify.KeyPermanent, classify.KeyRateLimited,
	classify.TargetError, classify.ClientError, classify.Cancelled, classify.KeyModel, classify.Unproven,
}

// Metrics records proxy traffic. The counters the request path touches are
// resolved once at construction, so recording is a few atomic adds with no
// label lookup. It is safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry
	// mine are the collectors this Metrics registered, through reg (with
	// its group label): Close unregisters them when the group goes.
	reg  prometheus.Registerer
	mine []prometheus.Collector

	requests [][len(statusClasses)]prometheus.Counter // [target index+1][class]; row 0 is noTarget
	attempts [][len(outcomes)]prometheus.Counter      // [target index][outcome]
	retries  prometheus.Counter
	duration prometheus.Histogram
	overhead prometheus.Histogram

	firstByte  prometheus.Histogram
	firstToken prometheus.Histogram
	failovers  map[string]prometheus.Counter // by reason, all made at New
}

// Sources are what the gauges read at scrape time.
type Sources struct {
	Keys     *keymanager.Manager
	Targets  *upstream.Balancer
	InFlight func() int64
	// Registry, when set, is shared with other groups' Metrics
	// (docs/groups.md): the process, Go and in-flight series are the
	// first one's. Group, when set, labels every series of this one
	// group="NAME".
	Registry *prometheus.Registry
	Group    string
}

// New registers every metric on a fresh registry, with Go runtime and
// process collectors beside them.
func New(src Sources) *Metrics {
	reg, shared := src.Registry, src.Registry != nil
	if !shared {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	var r prometheus.Registerer = reg
	if src.Group != "" {
		r = prometheus.WrapRegistererWith(prometheus.Labels{"group": src.Group}, reg)
	}

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Client requests answered, by status class and the target of the last attempt (\"none\" when no attempt was made).",
	}, []string{"target", "code"})
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_attempts_total",
		Help: "Upstream attempts by target and outcome class.",
	}, []string{"target", "outcome"})
	m := &Metrics{
		registry: reg,
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "Extra upstream attempts made after a first one failed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "Time from receiving a client request to the end of its response, streams included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "proxy_overhead_seconds",
			Help: "Time the proxy itself added before the response headers: from the request body being read " +
				"to the headers being sent, less the time upstream attempts took.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
	}
	m.register(r, requests, attempts, m.retries, m.duration, m.overhead)
	m.registerStreams(r)

	targets := src.Targets.Targets()
	m.requests = make([][len(statusClasses)]prometheus.Counter, len(targets)+1)
	m.attempts = make([][len(outcomes)]prometheus.Counter, len(targets))
	for c, class := range statusClasses {
		m.requests[0][c] = requests.WithLabelValues(noTarget, class)
	}
	for i, t := range targets {
		for c, class := range statusClasses {
			m.requests[i+1][c] = requests.WithLabelValues(t.String(), class)
		}
		for o, f := range outcomes {
			m.attempts[i][o] = attempts.WithLabelValues(t.String(), f.String())
		}
	}

	if !shared {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "requests_in_flight",
			Help: "Proxied requests being served now.",
		}, func() float64 { return float64(src.InFlight()) }))
	}
	m.register(r, &stateCollector{src: src})
	return m
}

// Handler serves the exposition format.
// register registers cs through r and remembers them for Close.
func (m *Metrics) register(r prometheus.Registerer, cs ...prometheus.Collector) {
	m.reg = r
	r.MustRegister(cs...)
	m.mine = append(m.mine, cs...)
}

// Close unregisters this group's series (a group removed by a reload).
func (m *Metrics) Close() {
	for _, c := range m.mine {
		m.reg.Unregister(c)
	}
	m.mine = nil
}

func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Registry is the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Attempt records one upstream attempt's outcome.
func (m *Metrics) Attempt(t *upstream.Target, f classify.Fault) {
	if int(f) < len(outcomes) {
		m.attempts[t.Index][f].Inc()
	}
}

// Done records a finished client request: its status, the target of its
// last attempt, the number of attempts, its duration and the proxy's own
// share of it (negative: unknown, not observed).
func (m *Metrics) Done(r *outcome.Record) {
	row := 0
	if r.Target != nil {
		row = r.Target.Index + 1
	}
	if c := r.Status/100 - 1; c >= 0 && c < len(statusClasses) {
		m.requests[row][c].Inc()
	}
	if r.Attempts > 1 {
		m.retries.Add(float64(r.Attempts - 1))
	}
	m.duration.Observe(r.Took.Seconds())
	if r.Overhead >= 0 {
		m.overhead.Observe(r.Overhead.Seconds())
	}
}

// stateCollector reports keys and targets by state, read at scrape time.
type stateCollector struct{ src Sources }

var (
	keysDesc = prometheus.NewDesc(namespace+"_keys", "API keys by state.", []string{"state"}, nil)
	tgtDesc  = prometheus.NewDesc(namespace+"_targets", "Upstream targets by state.", []string{"state"}, nil)
	upDesc   = prometheus.NewDesc(namespace+"_target_up", "1 when the target is in rotation, else 0.", []string{"target"}, nil)

	quotaDesc = prometheus.NewDesc(namespace+"_key_quota_remaining",
		"Sum over the keys of what their last rate-limit headers said remains, by kind (requests, tokens).", []string{"kind"}, nil)
	quotaSeenDesc = prometheus.NewDesc(namespace+"_keys_quota_seen",
		"Keys whose answers carried rate-limit headers.", nil, nil)
	quotaZeroDesc = prometheus.NewDesc(namespace+"_keys_quota_exhausted",
		"Keys whose last rate-limit headers said nothing remains.", nil, nil)
	modelsDesc = prometheus.NewDesc(namespace+"_key_model_exclusions",
		"(key, model) pairs excluded now because the provider said the key may not use the model.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keysDesc
	ch <- tgtDesc
	ch <- upDesc
	ch <- quotaDesc
	ch <- quotaSeenDesc
	ch <- quotaZeroDesc
	ch <- modelsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	k := c.src.Keys.Counts()
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(k.Active), "active")
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(k.Cooling), "cooling")
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(k.Blacklisted), "blacklisted")
	now := c.src.Targets.Now()
	by := map[string]int{"active": 0, "benched": 0, "probing": 0}
	for _, t := range c.src.Targets.Targets() {
		s := t.State(now)
		by[s]++
		up := 0.0
		if s == "active" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, t.String())
	}
	for _, s := range []string{"active", "benched", "probing"} {
		ch <- prometheus.MustNewConstMetric(tgtDesc, prometheus.GaugeValue, float64(by[s]), s)
	}
	q := c.src.Keys.QuotaSummary()
	ch <- prometheus.MustNewConstMetric(quotaDesc, prometheus.GaugeValue, float64(q.RequestsRemaining), "requests")
	ch <- prometheus.MustNewConstMetric(quotaDesc, prometheus.GaugeValue, float64(q.TokensRemaining), "tokens")
	ch <- prometheus.MustNewConstMetric(quotaSeenDesc, prometheus.GaugeValue, float64(q.Seen))
	ch <- prometheus.MustNewConstMetric(quotaZeroDesc, prometheus.GaugeValue, float64(q.Exhausted))
	ch <- prometheus.MustNewConstMetric(modelsDesc, prometheus.GaugeValue, float64(q.ModelExclusions))
}
