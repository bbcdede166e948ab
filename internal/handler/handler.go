// Package handler routes requests: the management endpoints are answered
// here, everything else goes to the proxy, all behind the middleware chain.
package handler

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/middleware"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// Deps is what the server is built from.
type Deps struct {
	Config  *config.Config
	Keys    *keymanager.Manager
	Targets *upstream.Balancer
	Proxy   *proxy.Proxy
	Log     *logrus.Entry
	Started time.Time
	// ResetKeys re-reads the keys file and resets every key's state.
	ResetKeys func() error
	// Metrics serves /metrics.
	Metrics http.Handler
	// Shared is the link to other replicas; nil without REDIS_URL.
	Shared Shared
}

// Shared is what /health and /stats show of the state shared through Redis.
type Shared interface {
	Up() bool
	// Totals are the cluster-wide request counters.
	Totals() (total, success, failure, retries int64)
}

// endpoint is a management endpoint and the methods it answers.
type endpoint struct {
	methods []string
	serve   http.HandlerFunc
}

// Management paths. A path not listed here is proxied.
const (
	PathHealth    = "/health"
	PathStats     = "/stats"
	PathBlacklist = "/blacklist"
	PathResetKeys = "/reset-keys"
	PathMetrics   = "/metrics"
	PathStatus    = "/status"
)

// IsManagement reports whether path is answered by gpt-load itself.
func IsManagement(path string) bool {
	switch path {
	case PathHealth, PathStats, PathBlacklist, PathResetKeys, PathMetrics, PathStatus:
		return true
	}
	return false
}

// New returns the whole server handler: recovery, access log, CORS and auth
// around the management endpoints and the proxy.
func New(d Deps) http.Handler {
	s := &server{Deps: d, statusPage: buildStatusPage()}
	get := []string{http.MethodGet, http.MethodHead}
	s.endpoints = map[string]endpoint{
		PathHealth:    {get, s.health},
		PathStats:     {get, s.stats},
		PathBlacklist: {get, s.blacklist},
		// GET is kept because the original README used it.
		PathResetKeys: {[]string{http.MethodPost, http.MethodGet}, s.resetKeys},
		PathMetrics:   {get, s.metrics},
		PathStatus:    {get, s.status},
	}
	// Requests answered here, management calls and CORS preflights, get no
	// access line; everything bound for the upstream does, rejected or not.
	cors := d.Config.CORS.Enabled
	proxied := func(r *http.Request) bool {
		return !IsManagement(r.URL.Path) && !(cors && middleware.IsPreflight(r))
	}
	return middleware.Chain(s,
		middleware.Recovery(d.Log),
		middleware.Logging(d.Log, d.Config.Log.EnableRequest, proxied),
		middleware.CORS(d.Config.CORS),
		// The status page holds nothing secret; the JSON it reads needs the token.
		middleware.Auth(d.Config.AuthKey, func(r *http.Request) bool {
			return r.URL.Path == PathHealth || r.URL.Path == PathStatus
		}),
	)
}

type server struct {
	Deps
	endpoints  map[string]endpoint
	statusPage statusPage
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !IsManagement(r.URL.Path) {
		s.Proxy.ServeHTTP(w, r)
		return
	}
	e := s.endpoints[r.URL.Path]
	for _, m := range e.methods {
		if r.Method == m {
			e.serve(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(e.methods, ", "))
	apierr.Write(w, apierr.New(http.StatusMethodNotAllowed, apierr.CodeMethodNotAllowed,
		r.Method+" is not allowed on "+r.URL.Path))
}

// writeJSON writes v with status, indented for people reading it with curl.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		apierr.Write(w, &apierr.Error{Status: http.StatusInternalServerError, Code: apierr.CodeInternal,
			Message: "could not render the answer", Err: err})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Metrics == nil {
		apierr.Write(w, apierr.New(http.StatusNotFound, apierr.CodeNotFound, "metrics are not enabled"))
		return
	}
	s.Metrics.ServeHTTP(w, r)
}
