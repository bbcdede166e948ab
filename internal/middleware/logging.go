package middleware

import (
	"net/http"
	"time"

	"github.com/gpt-load/gpt-load/internal/secret"

	"github.com/sirupsen/logrus"
)

// StatusClientClosed is logged when the client went away before an answer,
// after nginx's 499.
const StatusClientClosed = 499

// recorder remembers what was written, for the access line. It implements
// Unwrap so http.ResponseController reaches the real Flush.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	access      Access
}

// Access is what the proxy tells the access log about a request.
type Access struct {
	Key      secret.Key // the key used; only its mask is ever logged
	Target   string     // upstream host
	Attempts int
	// Status overrides the written status, e.g. StatusClientClosed.
	Status int
	// Aborted: the response was cut off after it started (the upstream
	// failed mid-body), so the client saw an error, not a short answer.
	Aborted bool
	// Error says why a response that had started failed (a stream cut by
	// its idle timeout, an upstream that broke off mid-stream).
	Error string
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		r.status = http.StatusOK
		r.wroteHeader = true
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// findRecorder walks the Unwrap chain of w to the access recorder.
func findRecorder(w http.ResponseWriter) *recorder {
	for {
		switch v := w.(type) {
		case *recorder:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// Annotate hands the access log what only the proxy knows. It does nothing
// when w does not pass through Logging.
func Annotate(w http.ResponseWriter, a Access) {
	if rec := findRecorder(w); rec != nil {
		rec.access = a
	}
}

// Logging writes one access line per request for which proxied reports
// true (SPEC §15): method, path without query, status, duration, key
// preview, target host, attempts and bytes sent; info below 400, warn for
// 4xx, error for 5xx. Other requests are logged at debug level. With
// enabled false, only the debug lines remain.
func Logging(log *logrus.Entry, enabled bool, proxied func(*http.Request) bool) Middleware {
	fast := newFastAccess(log)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w}
			start := time.Now()
			returned := false
			defer func() {
				status := rec.status
				switch {
				case rec.access.Status != 0:
					status = rec.access.Status
				case !rec.wroteHeader && !returned:
					// next panicked; Recovery, further out, answers 500.
					status = http.StatusInternalServerError
				case !rec.wroteHeader:
					status = http.StatusOK
				}
				level := logrus.InfoLevel
				switch {
				case status >= 500 || rec.access.Aborted:
					level = logrus.ErrorLevel
				case status >= 400:
					level = logrus.WarnLevel
				}
				isProxied := proxied(r)
				if !isProxied || !enabled {
					level = logrus.DebugLevel
				}
				if !log.Logger.IsLevelEnabled(level) {
					return
				}
				line := accessLine{
					level: level, method: r.Method, path: r.URL.Path, status: status,
					duration: time.Since(start).Round(time.Microsecond), bytes: rec.bytes, client: r.RemoteAddr,
					proxied: isProxied, key: rec.access.Key, upstream: rec.access.Target, attempts: rec.access.Attempts,
					aborted: rec.access.Aborted,
					err:     rec.access.Error,
				}
				if fast != nil {
					fast.write(&line)
					return
				}
				log.WithFields(line.fields()).Log(level, "request")
			}()
			next.ServeHTTP(rec, r)
			returned = true
		})
	}
}
