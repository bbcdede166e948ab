// Package server is gpt-load's HTTP server: it assembles keys, targets,
// upstream transport, proxy, metrics and the link to other replicas from
// the configuration, and answers the management routes itself.
package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/h1client"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/metrics"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Server is a wired gpt-load: one group or several (docs/groups.md), each
// with its keys, targets, proxy, metrics and link to other replicas, an
// upstream transport they share, and the HTTP handler in front.
type Server struct {
	cfg       *config.Config
	log       *logrus.Entry
	opts      Options
	transport *http.Transport
	upstream  *h1client.Transport // in front of transport
	// main is the group without GROUPS_DIR, and the default group (else
	// the first) with it; keys, targets, proxy, metrics and cluster are
	// its, for the endpoints and Parts.
	main    *group
	keys    *keymanager.Manager
	targets *upstream.Balancer
	proxy   *proxy.Proxy
	metrics *metrics.Metrics
	// cluster links replicas through Redis; nil without REDIS_URL.
	cluster *cluster.Cluster
	// groups is what GROUPS_DIR configures; nil without it.
	groups   atomic.Pointer[groupSet]
	registry *prometheus.Registry
	models   modelCache
	inflight atomic.Int64
	allKeys  allKeys
	// reloadMu serialises reloads and resets.
	reloadMu sync.Mutex
	// regroup is closed when a reload changed the groups (RunRecheck).
	regroupMu sync.Mutex
	regroup   chan struct{}

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
	// Upstream is the RoundTripper every group's proxy sends through:
	// h1client for plain http upstreams, Transport for the rest.
	Upstream *h1client.Transport
	Proxy    *proxy.Proxy
	Metrics  *metrics.Metrics
	// Cluster is nil without REDIS_URL.
	Cluster *cluster.Cluster
}

// Parts returns the server's parts.
func (s *Server) Parts() Parts {
	return Parts{Keys: s.keys, Targets: s.targets, Transport: s.transport, Upstream: s.upstream, Proxy: s.proxy,
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
	// Groups, when set, are the groups GROUPS_DIR configures
	// (groups.Load), served instead of the top-level keys; Getenv is the
	// environment they were read from, read again on SIGHUP.
	Groups []*groups.Spec
	Getenv func(string) string
}

// New wires a server for cfg over keys, which must not be empty. With
// REDIS_URL set it connects to Redis and loads the shared state first,
// waiting a few seconds at most (ctx bounds that wait). With
// opts.Groups (GROUPS_DIR), it serves those groups instead, keys unused.
func New(ctx context.Context, cfg *config.Config, keys []string, log *logrus.Entry, opts Options) (*Server, error) {
	s := &Server{cfg: cfg, log: log, opts: opts, started: time.Now(), statusPage: buildStatusPage(), reset: opts.ResetKeys}
	s.allKeys.s = s
	if s.reset == nil {
		s.reset = s.resetKeysEverywhere
	}
	var err error
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
	// One upstream RoundTripper for every group: plain http upstreams
	// through h1client, the rest through net/http behind ShareConns,
	// which takes over the transport's TLS dial and so must be made once.
	s.upstream = h1client.New(h1client.Options{
		Dial:           s.transport.DialContext,
		Proxy:          s.transport.Proxy,
		IdleTimeout:    cfg.IdleConnTimeout,
		MaxIdlePerHost: cfg.MaxConcurrentRequests,
		Fallback:       proxy.ShareConns(s.transport),
	})
	// The cluster's subscriber starts inside cluster.New and may hear
	// another replica's reset at once, before s is whole: the reload it
	// runs waits for ready.
	ready := make(chan struct{})
	defer close(ready)
	if opts.Groups != nil {
		if err := s.buildGroups(ctx, opts.Groups, ready); err != nil {
			return nil, err
		}
	} else {
		g, err := s.newGroup(ctx, "", nil, cfg, keys, ready)
		if err != nil {
			return nil, err
		}
		s.setMain(g)
	}
	s.metricsPage = s.metrics.Handler()
	s.handler = s.newHandler()
	return s, nil
}

// setMain makes g the group the endpoints and Parts speak of.
func (s *Server) setMain(g *group) {
	s.main, s.keys, s.targets, s.proxy, s.metrics, s.cluster = g, g.keys, g.targets, g.proxy, g.metrics, g.cluster
}

// newGroup builds one group's keys, targets, proxy, metrics and Redis
// link. name is "" without GROUPS_DIR: its metrics carry no group label
// and its Redis names are REDIS_PREFIX's, as before groups existed.
func (s *Server) newGroup(ctx context.Context, name string, spec *groups.Spec, cfg *config.Config, keys []string, ready <-chan struct{}) (*group, error) {
	opts := s.opts
	g := &group{name: name, spec: spec, cfg: cfg}
	log := s.log
	if name != "" {
		log = log.WithField("group", name)
	}
	start := cfg.StartIndex
	if !cfg.RedisURL.Empty() {
		// Replicas start at different places so they do not march in step
		// over the same keys.
		start = (start + rand.IntN(len(keys))) % len(keys)
	}
	g.keys = keymanager.New(keys, keymanager.Options{
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
	g.targets = upstream.NewBalancer(targets, upstream.Options{Cooldown: opts.TargetCooldown, Now: opts.Now})
	// The first group's metrics make the registry; each group's series
	// carry its name (none without GROUPS_DIR).
	g.metrics = metrics.New(metrics.Sources{Keys: g.keys, Targets: g.targets, InFlight: s.inflight.Load,
		Registry: s.registry, Group: name})
	if s.registry == nil {
		s.registry = g.metrics.Registry()
	}
	po := proxy.Options{
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
		Observer:          g.metrics,
		InFlight:          &s.inflight,
	}
	if name != "" {
		po.RedactKeys = &s.allKeys
	}
	g.proxy = proxy.New(po, g.keys, g.targets, s.upstream, log)
	if !cfg.RedisURL.Empty() {
		prefix := cfg.RedisPrefix
		if name != "" && name != groups.DefaultName {
			// Each group's state apart; the default group keeps the
			// names of a gpt-load without groups.
			prefix += "group:" + name + ":"
		}
		g.cluster, err = cluster.New(ctx, cluster.Options{
			URL: cfg.RedisURL.Reveal(), Prefix: prefix, Log: log,
			FingerprintSecret: cfg.RedisFingerprintSecret.Reveal(), Now: opts.Now,
			OnReset: func() error { <-ready; return s.resetGroup(g) },
		}, g.keys, g.targets, g.proxy)
		if err != nil {
			g.metrics.Close()
			return nil, err
		}
	}
	return g, nil
}

// close stops a group's Redis link and removes its metrics.
func (g *group) close() {
	if g.cluster != nil {
		g.cluster.Close()
	}
	if g.name != "" {
		g.metrics.Close()
	}
}

// resetKeysEverywhere is /reset-keys: every group here, then on every
// replica. Cut off from Redis, it resets this replica only and returns an
// error that wraps cluster.ErrResetNotShared.
func (s *Server) resetKeysEverywhere() error { return s.resetGroups(s.groupList()) }

// resetGroups resets the keys of gs here and, through Redis, on every
// replica.
func (s *Server) resetGroups(gs []*group) error {
	for _, g := range gs {
		if err := s.resetGroup(g); err != nil {
			return err
		}
	}
	var shareErr error
	for _, g := range gs {
		if g.cluster == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.cluster.Reset(ctx)
		cancel()
		if err != nil {
			s.log.WithError(err).Warn("reset-keys: done here, but not shared with the other replicas")
			shareErr = err
		}
	}
	return shareErr
}

// RunRecheck re-checks blacklisted keys every KEY_RECHECK_INTERVAL of
// each group until ctx ends; with Redis, one replica per round takes a
// lease and does it. A reload that changes the groups restarts the loops
// for the groups there are then.
func (s *Server) RunRecheck(ctx context.Context) {
	for {
		changed := s.regrouped()
		loopCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, g := range s.groupList() {
			interval := g.cfg.KeyRecheckInterval
			var gate func(context.Context) bool
			if g.cluster != nil {
				c := g.cluster
				gate = func(ctx context.Context) bool { return c.AcquireRecheck(ctx, interval*9/10) }
			}
			wg.Go(func() { g.proxy.Recheck(loopCtx, interval, gate) })
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
	}
}

// regrouped returns a channel closed when the set of groups changes next.
func (s *Server) regrouped() <-chan struct{} {
	s.regroupMu.Lock()
	defer s.regroupMu.Unlock()
	if s.regroup == nil {
		s.regroup = make(chan struct{})
	}
	return s.regroup
}

// groupsChanged wakes RunRecheck after a reload changed the groups.
func (s *Server) groupsChanged() {
	s.regroupMu.Lock()
	defer s.regroupMu.Unlock()
	if s.regroup != nil {
		close(s.regroup)
		s.regroup = nil
	}
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

// Reload re-reads the keys file (and, with GROUPS_DIR, the groups:
// docs/groups.md, "Reloading"). With reset, every key starts afresh
// (/reset-keys); without, keys that remain keep their state (SIGHUP). A bad
// file leaves the old keys in place and is returned.
func (s *Server) Reload(reset bool) error {
	if reset {
		return s.resetGroups(s.groupList())
	}
	if s.groups.Load() != nil {
		return s.reloadGroups()
	}
	return s.reloadGroup(s.main, s.cfg.KeysFile)
}

// resetGroup re-reads g's keys file and clears every key's state, here
// only.
func (s *Server) resetGroup(g *group) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	p, err := keymanager.ParseFile(g.cfg.KeysFile)
	if err != nil {
		return err
	}
	g.keys.Reset(p.Keys)
	if g.cluster != nil {
		g.cluster.KeysChanged()
	}
	s.keysChanged(g)
	s.logFor(g).WithFields(logrus.Fields{"keys": len(p.Keys), "duplicates": p.Duplicates}).Info("keys reset")
	if len(p.Spaced) > 0 {
		s.logFor(g).WithFields(keymanager.SpacedFields(p.Spaced)).Warn(keymanager.SpacedWarning)
	}
	return nil
}

// reloadGroup re-reads g's keys from file; keys that remain keep their
// state.
func (s *Server) reloadGroup(g *group, file string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	p, err := keymanager.ParseFile(file)
	if err != nil {
		return err
	}
	if len(p.Spaced) > 0 {
		s.logFor(g).WithFields(keymanager.SpacedFields(p.Spaced)).Warn(keymanager.SpacedWarning)
	}
	s.reloadKeys(g, p.Keys, p.Duplicates)
	return nil
}

// reloadKeys puts keys in g; caller holds reloadMu.
func (s *Server) reloadKeys(g *group, keys []string, duplicates int) {
	res := g.keys.Reload(keys)
	if g.cluster != nil {
		g.cluster.KeysReloaded()
	}
	s.keysChanged(g)
	s.logFor(g).WithFields(logrus.Fields{"keys": res.Total, "added": res.Added, "removed": res.Removed,
		"duplicates": duplicates}).Info("keys reloaded")
}

// keysChanged makes answers be searched for g's new keys from now on.
func (s *Server) keysChanged(g *group) {
	if s.groups.Load() != nil {
		s.allKeys.refresh()
	}
	g.proxy.KeysChanged()
}

func (s *Server) logFor(g *group) *logrus.Entry {
	if g.name == "" {
		return s.log
	}
	return s.log.WithField("group", g.name)
}

// Close stops sharing state and releases idle upstream connections.
func (s *Server) Close() {
	for _, g := range s.groupList() {
		if g.cluster != nil {
			g.cluster.Close()
		}
	}
	s.upstream.CloseIdleConnections()
}
