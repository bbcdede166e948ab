// Package server assembles gpt-load from its configuration: keys, targets,
// upstream transport, proxy, metrics and the HTTP handler in front of them.
package server

import (
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

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

	log *logrus.Entry
}

// Options are knobs that have no environment variable.
type Options struct {
	// TargetCooldown is a benched target's first cooldown; 0 means the
	// balancer's default.
	TargetCooldown time.Duration
}

// New wires a server for cfg over keys, which must not be empty.
func New(cfg *config.Config, keys []string, log *logrus.Entry, opts Options) (*Server, error) {
	s := &Server{Config: cfg, log: log}
	s.Keys = keymanager.New(keys, keymanager.Options{
		StartIndex:         cfg.StartIndex,
		BlacklistThreshold: cfg.BlacklistThreshold,
		Cooldown:           cfg.KeyCooldown,
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
	})
	if err != nil {
		return nil, err
	}
	s.Metrics = metrics.New(metrics.Sources{Keys: s.Keys, Targets: s.Targets, InFlight: func() int64 { return s.Proxy.InFlight() }})
	s.Proxy = proxy.New(proxy.Options{
		MaxRetries:        cfg.MaxRetries,
		MaxBodySize:       cfg.MaxRequestBodySize,
		MaxConcurrent:     cfg.MaxConcurrentRequests,
		StripUpstreamCORS: cfg.CORS.Enabled,
		Observer:          s.Metrics,
	}, s.Keys, s.Targets, s.Transport, log)
	s.Handler = handler.New(handler.Deps{
		Config: cfg, Keys: s.Keys, Targets: s.Targets, Proxy: s.Proxy, Log: log,
		Started: time.Now(), ResetKeys: func() error { return s.Reload(true) },
		Metrics: s.Metrics.Handler(),
	})
	return s, nil
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
	if reset {
		s.Keys.Reset(p.Keys)
		s.log.WithFields(logrus.Fields{"keys": len(p.Keys), "duplicates": p.Duplicates}).Info("keys reset")
		return nil
	}
	res := s.Keys.Reload(p.Keys)
	s.log.WithFields(logrus.Fields{"keys": res.Total, "added": res.Added, "removed": res.Removed,
		"duplicates": p.Duplicates}).Info("keys reloaded")
	return nil
}

// Close releases idle upstream connections.
func (s *Server) Close() { s.Transport.CloseIdleConnections() }
