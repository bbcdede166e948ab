// Package server assembles gpt-load from its configuration: keys, targets,
// upstream transport, proxy, metrics and the HTTP handler in front of them.
package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/handler"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/metrics"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Server is a wired gpt-load. Handler serves everything; the other fields
// are its parts, for the process around it and for tests.
type Server struct {
	Config    *config.Config
	Keys      *keymanager.Manager
	Targets   *upstream.Balancer
	Transport *http.Transport
	Proxy     *proxy.Proxy
	Metrics   *metrics.Metrics
	Handler   http.Handler
	// Cluster links replicas through Redis; nil without REDIS_URL.
	Cluster *cluster.Cluster

	log *logrus.Entry
}

// Options are knobs that have no environment variable.
type Options struct {
	// TargetCooldown is a benched target's first cooldown; 0 means the
	// balancer's default.
	TargetCooldown time.Duration
	// StreamWindow is the commit window's time bound; 0 means 10 s
	// (SPEC §20). Tests shorten it.
	StreamWindow time.Duration
}

// New wires a server for cfg over keys, which must not be empty. With
// REDIS_URL set it connects to Redis and loads the shared state first,
// waiting a few seconds at most (ctx bounds that wait).
func New(ctx context.Context, cfg *config.Config, keys []string, log *logrus.Entry, opts Options) (*Server, error) {
	s := &Server{Config: cfg, log: log}
	start := cfg.StartIndex
	if !cfg.RedisURL.Empty() {
		// Replicas start at different places so they do not march in step
		// over the same keys.
		start = (start + rand.IntN(len(keys))) % len(keys)
	}
	s.Keys = keymanager.New(keys, keymanager.Options{
		StartIndex:         start,
		BlacklistThreshold: cfg.BlacklistThreshold,
		Cooldown:           cfg.KeyCooldown,
		ModelCooldown:      cfg.ModelCooldown,
	})
	targets, err := newTargets(cfg)
	if err != nil {
		return nil, err
	}
	s.Targets = upstream.NewBalancer(targets, upstream.Options{Cooldown: opts.TargetCooldown})
	s.Transport, err = proxy.NewTransport(proxy.TransportOptions{
		ConnectTimeout:  cfg.RequestTimeout,
		ResponseTimeout: cfg.ResponseTimeout,
		IdleConnTimeout: cfg.IdleConnTimeout,
		MaxIdlePerHost:  cfg.MaxConcurrentRequests,
		RootCAs:         cfg.UpstreamRootCAs,
	})
	if err != nil {
		return nil, err
	}
	s.Metrics = metrics.New(metrics.Sources{Keys: s.Keys, Targets: s.Targets, InFlight: func() int64 { return s.Proxy.InFlight() }})
	s.Proxy = proxy.New(proxy.Options{
		MaxRetries:        cfg.MaxRetries,
		MaxBodySize:       cfg.MaxRequestBodySize,
		BodyMemoryLimit:   cfg.BodyMemoryLimit,
		MaxConcurrent:     cfg.MaxConcurrentRequests,
		StripUpstreamCORS: cfg.CORS.Enabled,
		QueueTimeout:      cfg.QueueTimeout,
		StreamIdleTimeout: cfg.StreamIdleTimeout,
		StreamKeepalive:   cfg.StreamKeepalive,
		StreamWindow:      opts.StreamWindow,
		Observer:          s.Metrics,
	}, s.Keys, s.Targets, proxy.ShareConns(s.Transport), log)
	deps := handler.Deps{
		Config: cfg, Keys: s.Keys, Targets: s.Targets, Proxy: s.Proxy, Log: log,
		Started: time.Now(), ResetKeys: s.resetKeys,
		Metrics: s.Metrics.Handler(),
	}
	if !cfg.RedisURL.Empty() {
		// The cluster's subscriber starts inside cluster.New and may hear
		// another replica's reset at once, before s.Cluster is set: the
		// reload it runs waits until s is whole.
		ready := make(chan struct{})
		defer close(ready)
		s.Cluster, err = cluster.New(ctx, cluster.Options{
			URL: cfg.RedisURL.Reveal(), Prefix: cfg.RedisPrefix, Log: log,
			OnReset: func() error { <-ready; return s.Reload(true) },
		}, s.Keys, s.Targets, proxyCounters{s.Proxy})
		if err != nil {
			return nil, err
		}
		deps.Shared = sharedView{s.Cluster}
	}
	s.Handler = handler.New(deps)
	return s, nil
}

// resetKeys is /reset-keys: here, then on every replica.
func (s *Server) resetKeys() error {
	if err := s.Reload(true); err != nil {
		return err
	}
	if s.Cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Cluster.Reset(ctx); err != nil {
			s.log.WithError(err).Warn("reset-keys: done here, but not shared with the other replicas")
		}
	}
	return nil
}

// RunRecheck re-checks blacklisted keys every KEY_RECHECK_INTERVAL until
// ctx ends; with Redis, one replica per round takes a lease and does it.
func (s *Server) RunRecheck(ctx context.Context) {
	interval := s.Config.KeyRecheckInterval
	var gate func(context.Context) bool
	if s.Cluster != nil {
		gate = func(ctx context.Context) bool { return s.Cluster.AcquireRecheck(ctx, interval*9/10) }
	}
	s.Proxy.Recheck(ctx, interval, gate)
}

// proxyCounters shows the proxy's counters to the cluster.
type proxyCounters struct{ p *proxy.Proxy }

func (c proxyCounters) Totals() cluster.Totals {
	n := c.p.Counters()
	return cluster.Totals{Total: int64(n.Total.Load()), Success: int64(n.Success.Load()),
		Failure: int64(n.Failure.Load()), Retries: int64(n.Retries.Load())}
}

// sharedView shows the cluster to the management endpoints.
type sharedView struct{ c *cluster.Cluster }

func (v sharedView) Up() bool { return v.c.Up() }

func (v sharedView) Totals() (total, success, failure, retries int64) {
	t := v.c.ClusterTotals()
	return t.Total, t.Success, t.Failure, t.Retries
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
	p, err := keymanager.ParseFile(s.Config.KeysFile)
	if err != nil {
		return err
	}
	// Error bodies are searched for the new keys from now on.
	defer s.Proxy.KeysChanged()
	if reset {
		s.Keys.Reset(p.Keys)
		if s.Cluster != nil {
			s.Cluster.KeysChanged()
		}
		s.log.WithFields(logrus.Fields{"keys": len(p.Keys), "duplicates": p.Duplicates}).Info("keys reset")
		return nil
	}
	res := s.Keys.Reload(p.Keys)
	if s.Cluster != nil {
		s.Cluster.KeysChanged()
	}
	s.log.WithFields(logrus.Fields{"keys": res.Total, "added": res.Added, "removed": res.Removed,
		"duplicates": p.Duplicates}).Info("keys reloaded")
	return nil
}

// Close stops sharing state and releases idle upstream connections.
func (s *Server) Close() {
	if s.Cluster != nil {
		s.Cluster.Close()
	}
	s.Transport.CloseIdleConnections()
}
