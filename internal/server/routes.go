package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/middleware"
)

// route is one management route: a ServeMux pattern such as "GET /health"
// (a GET route answers HEAD too, unless noHead), whether it is answered
// without AUTH_KEY, and its handler.
type route struct {
	pattern string
	public  bool
	noHead  bool
	serve   func(*Server, http.ResponseWriter, *http.Request)
}

// PathHealth is the health endpoint's path, which probes ask.
const PathHealth = "/health"

// routes are every route gpt-load answers itself. A path not listed here
// goes to the proxy as it came: never cleaned, never redirected. A listed
// path asked with another method gets 405 in the OpenAI error shape, with
// Allow.
var routes = []route{
	{pattern: "GET " + PathHealth, public: true, serve: (*Server).health},
	// The status page holds nothing secret; the JSON it reads needs the
	// token, and the page asks for it.
	{pattern: "GET /status", public: true, serve: (*Server).status},
	{pattern: "GET /stats", serve: (*Server).stats},
	{pattern: "GET /blacklist", serve: (*Server).blacklist},
	{pattern: "POST /reset-keys", serve: (*Server).resetKeys},
	// GET is kept because the original README used it; a HEAD must not
	// reset anything.
	{pattern: "GET /reset-keys", noHead: true, serve: (*Server).resetKeys},
	{pattern: "GET /metrics", serve: (*Server).serveMetrics},
}

// router sends management paths to their routes and everything else to
// the proxy.
type router struct {
	mux   *http.ServeMux
	paths map[string]bool // management path → public
	proxy http.Handler
}

func newRouter(s *Server, proxy http.Handler) *router {
	rt := &router{mux: http.NewServeMux(), paths: map[string]bool{}, proxy: proxy}
	allow := map[string][]string{}
	var noHead []string
	for _, r := range routes {
		method, path, _ := strings.Cut(r.pattern, " ")
		rt.paths[path] = r.public
		allow[path] = append(allow[path], method)
		switch {
		case method == http.MethodGet && r.noHead:
			noHead = append(noHead, path)
		case method == http.MethodGet:
			allow[path] = append(allow[path], http.MethodHead)
		}
		rt.mux.HandleFunc(r.pattern, func(w http.ResponseWriter, req *http.Request) { r.serve(s, w, req) })
	}
	for path, methods := range allow {
		slices.Sort(methods)
		notAllowed := methodNotAllowed(strings.Join(methods, ", "))
		// The pattern without a method catches the methods the others
		// do not answer.
		rt.mux.HandleFunc(path, notAllowed)
		if slices.Contains(noHead, path) {
			rt.mux.HandleFunc(http.MethodHead+" "+path, notAllowed)
		}
	}
	return rt
}

// methodNotAllowed answers 405 in the OpenAI error shape, with Allow.
func methodNotAllowed(allowed string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowed)
		apierr.Write(w, apierr.New(http.StatusMethodNotAllowed, apierr.CodeMethodNotAllowed,
			r.Method+" is not allowed on "+r.URL.Path))
	}
}

// isManagement reports whether r is for a route gpt-load answers itself.
func (rt *router) isManagement(r *http.Request) bool {
	_, ok := rt.paths[r.URL.Path]
	return ok
}

// isPublic reports whether r may go without AUTH_KEY.
func (rt *router) isPublic(r *http.Request) bool { return rt.paths[r.URL.Path] }

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only exact management paths reach the mux, so it never cleans or
	// redirects a proxied path.
	if !rt.isManagement(r) {
		rt.proxy.ServeHTTP(w, r)
		return
	}
	rt.mux.ServeHTTP(w, r)
}

// newHandler returns the whole server handler: recovery, access log, CORS and
// auth around the routes and the proxy.
func (s *Server) newHandler() http.Handler {
	var proxied http.Handler = s.proxy
	grouped := s.groups.Load() != nil
	if grouped {
		// Routed among the groups, which check their own tokens
		// (docs/groups.md, "Tokens").
		proxied = http.HandlerFunc(s.dispatch)
	}
	rt := newRouter(s, proxied)
	// Requests answered here, management calls and CORS preflights, get no
	// access line; everything bound for the upstream does, rejected or not.
	cors := s.cfg.CORS.Enabled
	isProxied := func(r *http.Request) bool {
		return !rt.isManagement(r) && !(cors && middleware.IsPreflight(r))
	}
	exempt := rt.isPublic
	if grouped {
		exempt = func(r *http.Request) bool { return rt.isPublic(r) || !rt.isManagement(r) }
	}
	return middleware.Chain(rt,
		middleware.Recovery(s.log),
		middleware.Logging(s.log, s.cfg.Log.EnableRequest, isProxied),
		middleware.CORS(s.cfg.CORS),
		s.proxy.Guard,
		middleware.Auth(s.cfg.AuthKey, exempt),
	)
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

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metricsPage.ServeHTTP(w, r)
}
