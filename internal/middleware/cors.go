package middleware

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gpt-load/gpt-load/internal/config"
)

// corsMaxAge is how long browsers may cache a preflight answer: a day, so
// a browser client does not pay a preflight per call.
const corsMaxAge = 86400

// exposedWithCredentials are the response headers browser code may read
// when credentials are allowed.
const exposedWithCredentials = "X-Gpt-Load-Attempts, X-Request-Id, Retry-After, Openai-Processing-Ms, " +
	"X-Ratelimit-Limit-Requests, X-Ratelimit-Remaining-Requests, X-Ratelimit-Reset-Requests, " +
	"X-Ratelimit-Limit-Tokens, X-Ratelimit-Remaining-Tokens, X-Ratelimit-Reset-Tokens"

// CORS answers preflights from allowed origins with 204 and marks other
// responses to allowed origins (docs/api.md, "CORS"). Disallowed origins
// get no CORS headers; their preflights are answered 204 without them, so
// the browser refuses the call and the upstream never sees it.
func CORS(c config.CORS) Middleware {
	if !c.Enabled {
		return func(next http.Handler) http.Handler { return next }
	}
	allowed := make(map[string]bool, len(c.AllowedOrigins))
	for _, o := range c.AllowedOrigins {
		allowed[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	anyOrigin := c.AnyOrigin()
	anyHeader := len(c.AllowedHeaders) == 1 && c.AllowedHeaders[0] == "*"
	methods := strings.Join(c.AllowedMethods, ", ")
	headers := strings.Join(c.AllowedHeaders, ", ")
	maxAge := strconv.Itoa(corsMaxAge)
	// "*" exposes every header, except to credentialed requests, which
	// take it literally (Fetch standard): name the useful ones then.
	expose := "*"
	if c.AllowCredentials {
		expose = exposedWithCredentials
	}

	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			preflight := IsPreflight(r)
			if origin == "" {
				if preflight {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			ok := anyOrigin || allowed[strings.ToLower(origin)]
			if ok {
				if anyOrigin && !c.AllowCredentials {
					h.Set("Access-Control-Allow-Origin", "*")
				} else {
					h.Set("Access-Control-Allow-Origin", origin)
				}
				if c.AllowCredentials {
					h.Set("Access-Control-Allow-Credentials", "true")
				}
			}
			if !preflight {
				if ok {
					h.Set("Access-Control-Expose-Headers", expose)
				}
				next.ServeHTTP(w, r)
				return
			}
			if ok {
				h.Add("Vary", "Access-Control-Request-Method")
				h.Add("Vary", "Access-Control-Request-Headers")
				h.Set("Access-Control-Allow-Methods", methods)
				allowHeaders := headers
				// "*" is no wildcard for credentialed requests (Fetch
				// standard), so echo what the browser asks for.
				if anyHeader {
					if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
						allowHeaders = req
					}
				}
				h.Set("Access-Control-Allow-Headers", allowHeaders)
				h.Set("Access-Control-Max-Age", maxAge)
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}
