// Package server is gpt-load's HTTP server: it assembles keys, targets,
// upstream transport, proxy, metrics and the link to other replicas from
// the configuration, and answers the management routes itself.
package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/metrics"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Server is a wired gpt-load: keys, targets, upstream transport, proxy,
// metrics, the link to other replicas, and the HTTP handler in front.
type Server struct {
	cfg       *config.Config
	log       *logrus.Entry
	keys      *keymanager.Manager
	targets   *upstream.Balancer
	transport *http.Transport
	proxy     *proxy.Proxy
	metrics   *metrics.Metrics
	// cluster links replicas through Redis; nil without REDIS_URL.
	cluster *cluster.Cluster

	handler     http.Handler
	metricsPage http.Handler
	statusPage  statusPage
	started     time.Time
	// reset is what /reset-keys does.
	reset func() error
}

// Parts are what a Server is built from, for tests and tools that look
// inside; serving needs none of them.
type Parts struct {
	Keys      *keymanager.Manager
	Targets   *upstream.Balancer
	Transport *http.Transport
	Proxy     *proxy.Proxy
	Metrics   *metrics.Metrics
	// Cluster is nil without REDIS_URL.
	Cluster *cluster.Cluster
}

// Parts returns the server's parts.
func (s *Server) Parts() Parts {
	return Parts{Keys: s.keys, Targets: s.targets, Transport: s.transport, Proxy: s.proxy,
		Metrics: s.metrics, Cluster: s.cluster}
}

// Handler serves everything: the management routes and the proxy, behind
// the middleware chain.
func (s *Server) Handler() http.Handler { return s.handler }

// Options are knobs that have no environment variable.
type Options struct {
	// TargetCooldown is a benched target's first cooldown; 0 means the
	// balancer's default.
	TargetCooldown time.Duration
	// StreamWindow is the commit window's time bound; 0 means 10 s
	// (docs/api.md, "Streaming"). Tests shorten it.
	StreamWindow time.Duration
	// ErrorBodyTimeout bounds the read of an upstream's error body; 0
	// means 10 s (docs/api.md, "Bad input and faults"). Tests shorten it.
	ErrorBodyTimeout time.Duration
	// ResetKeys, when set, replaces what /reset-keys does; tests use it.
	ResetKeys func() error
	// Now is the clock of key and target health; nil means time.Now.
	// Tests give replicas clocks minutes apart.
	Now func() time.Time
}

// New wires a server for cfg over keys, which must not be empty. With
// REDIS_URL set it connects to Redis and loads the shared state first,
// waiting a few seconds at most (ctx bounds that wait).
func New(ctx context.Context, cfg *config.Config, keys []string, log *logrus.Entry, opts Options) (*Server, error) {
	s := &Server{cfg: cfg, log: log, started: time.Now(), statusPage: buildStatusPage(), reset: opts.ResetKeys}
	if s.reset == nil {
		s.reset = s.resetKeysEverywhere
	}
	start := cfg.StartIndex
	if !cfg.RedisURL.Empty() {
		// Replicas start at different places so they do not march in step
		// over the same keys.
		start = (start + rand.IntN(len(keys))) % len(keys)
	}
	s.keys = keymanager.New(keys, keymanager.Options{
		StartIndex:         start,
		BlacklistThreshold: cfg.BlacklistThreshold,
		Cooldown:           cfg.KeyCooldown,
		ModelCooldown:      cfg.ModelCooldown,
		Now:                opts.Now,
	})
	targets, err := newTargets(cfg)
	if err != nil {
		return nil, err
	}
	s.targets = upstream.NewBalancer(targets, upstream.Options{Cooldown: opts.TargetCooldown, Now: opts.Now})
	s.transport, err = proxy.NewTransport(proxy.TransportOptions{
		ConnectTimeout:  cfg.RequestTimeout,
		ResponseTimeout: cfg.ResponseTimeout,
		IdleConnTimeout: cfg.IdleConnTimeout,
		MaxIdlePerHost:  cfg.MaxConcurrentRequests,
		RootCAs:         cfg.UpstreamRootCAs,
	})
	if err != nil {
		return nil, err
	}
	s.metrics = metrics.New(metrics.Sources{Keys: s.keys, Targets: s.targets, InFlight: func() int64 { return s.proxy.InFlight() }})
	s.metricsPage = s.metrics.Handler()
	s.proxy = proxy.New(proxy.Options{
		MaxRetries:        cfg.MaxRetries,
		MaxBodySize:       cfg.MaxRequestBodySize,
		BodyMemoryLimit:   cfg.BodyMemoryLimit,
		MaxConcurrent:     cfg.MaxConcurrentRequests,
		StripUpstreamCORS: cfg.CORS.Enabled,
		QueueTimeout:      cfg.QueueTimeout,
		StreamIdleTimeout: cfg.StreamIdleTimeout,
		StreamKeepalive:   cfg.StreamKeepalive,
		StreamWindow:      opts.StreamWindow,
		ResponseTimeout:   cfg.ResponseTimeout,
		ErrorBodyTimeout:  opts.ErrorBodyTimeout,
		Observer:          s.metrics,
	}, s.keys, s.targets, proxy.ShareConns(s.transport), log)
	if !cfg.RedisURL.Empty() {
		// The cluster's subscriber starts inside cluster.New and may hear
		// another replica's reset at once, before s.cluster is set: the
		// reload it runs waits until s is whole.
		ready := make(chan struct{})
		defer close(ready)
		s.cluster, err = cluster.New(ctx, cluster.Options{
			URL: cfg.RedisURL.Reveal(), Prefix: cfg.RedisPrefix, Log: log,
			FingerprintSecret: cfg.RedisFingerprintSecret.Reveal(), Now: opts.Now,
			OnReset: func() error { <-ready; return s.Reload(true) },
		}, s.keys, s.targets, s.proxy)
		if err != nil {
			return nil, err
		}
	}
	s.handler = s.newHandler()
	return s, nil
}

// resetKeysEverywhere is /reset-keys: here, then on every replica. Cut
// off from Redis, it resets this replica only and returns an error that
// wraps cluster.ErrResetNotShared.
func (s *Server) resetKeysEverywhere() error {
	if err := s.Reload(true); err != nil {
		return err
	}
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.cluster.Reset(ctx); err != nil {
			s.log.WithError(err).Warn("reset-keys: done here, but not shared with the other replicas")
			return err
		}
	}
	return nil
}

// RunRecheck re-checks blacklisted keys every KEY_RECHECK_INTERVAL until
// ctx ends; with Redis, one replica per round takes a lease and does it.
func (s *Server) RunRecheck(ctx context.Context) {
	interval := s.cfg.KeyRecheckInterval
	var gate func(context.Context) bool
	if s.cluster != nil {
		gate = func(ctx context.Context) bool { return s.cluster.AcquireRecheck(ctx, interval*9/10) }
	}
	s.proxy.Recheck(ctx, interval, gate)
}

func newTargets(cfg *config.Config) ([]*upstream.Target, error) {
	var forced *upstream.AuthStyle
	if cfg.AuthStyle != "auto" {
		st, err := upstream.ParseAuthStyle(cfg.AuthStyle)
		if err != nil {
			return nil, err
		}
		forced = &st
	}
	targets := make([]*upstream.Target, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		style := upstream.StyleForHost(u.Hostname())
		if forced != nil {
			style = *forced
		}
		targets = append(targets, upstream.NewTarget(u, style))
	}
	return targets, nil
}

// Reload re-reads the keys file. With reset, every key starts afresh
// (/reset-keys); without, keys that remain keep their state (SIGHUP). A bad
// file leaves the old keys in place and is returned.
func (s *Server) Reload(reset bool) error {
	p, err := keymanager.ParseFile(s.cfg.KeysFile)
	if err != nil {
		return err
	}
	// Error bodies are searched for the new keys from now on.
	defer s.proxy.KeysChanged()
	if reset {
		s.keys.Reset(p.Keys)
		if s.cluster != nil {
			s.cluster.KeysChanged()
		}
		s.log.WithFields(logrus.Fields{"keys": len(p.Keys), "duplicates": p.Duplicates}).Info("keys reset")
		return nil
	}
	res := s.keys.Reload(p.Keys)
	if s.cluster != nil {
		s.cluster.KeysReloaded()
	}
	s.log.WithFields(logrus.Fields{"keys": res.Total, "added": res.Added, "removed": res.Removed,
		"duplicates": p.Duplicates}).Info("keys reloaded")
	return nil
}

// Close stops sharing state and releases idle upstream connections.
func (s *Server) Close() {
	if s.cluster != nil {
		s.cluster.Close()
	}
	s.transport.CloseIdleConnections()
}
