package middleware

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// Auth requires the client token on every request for which exempt returns
// false (docs/api.md, "Client authentication"). The token may come as
// "Authorization: Bearer T", "x-api-key: T", "x-goog-api-key: T",
// "api-key: T" or the query parameter key=T; each is compared in constant
// time. An empty token turns Auth off.
func Auth(token secret.Key, exempt func(*http.Request) bool) Middleware {
	if token.Empty() {
		return func(next http.Handler) http.Handler { return next }
	}
	want := []byte(token.Reveal())
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if exempt(r) || Authorized(r, want) {
				next.ServeHTTP(w, r)
				return
			}
			apierr.Write(w, apierr.New(http.StatusUnauthorized, apierr.CodeInvalidAuth,
				"invalid or missing gpt-load token: send it as Authorization: Bearer <token>"))
		})
	}
}

// Authorized reports whether r presents want in any accepted form.
func Authorized(r *http.Request, want []byte) bool {
	return EachToken(r, func(got string) bool {
		return subtle.ConstantTimeCompare([]byte(got), want) == 1
	})
}

// EachToken calls f with each client token r presents, in the forms
// gpt-load accepts and in this order: Authorization: Bearer, X-Api-Key,
// X-Goog-Api-Key, Api-Key, the key query parameter. It stops at, and
// reports, the first token for which f returns true.
func EachToken(r *http.Request, f func(token string) bool) bool {
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		if t := strings.TrimSpace(v[7:]); t != "" && f(t) {
			return true
		}
	}
	for _, name := range [...]string{"X-Api-Key", "X-Goog-Api-Key", "Api-Key"} {
		if t := r.Header.Get(name); t != "" && f(t) {
			return true
		}
	}
	if strings.Contains(r.URL.RawQuery, "key=") {
		if t := r.URL.Query().Get("key"); t != "" && f(t) {
			return true
		}
	}
	return false
}
