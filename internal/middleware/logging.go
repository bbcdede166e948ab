package middleware

import (
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/outcome"
)

// recorder remembers what was written, for the access line, and holds the
// outcome record a proxy further in fills. It implements Unwrap so
// http.ResponseController reaches the real Flush.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	outcome     outcome.Record
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

// Logging writes one access line per request for which proxied reports
// true (docs/operations.md, "Logging"): method, path without query,
// status, duration, key preview, target host, attempts and bytes sent;
// info below 400, warn for 4xx, error for 5xx. Other requests are logged
// at debug level. With enabled false, only the debug lines remain.
func Logging(log *logrus.Entry, enabled bool, proxied func(*http.Request) bool) Middleware {
	fast := newFastAccess(log)
	// A proxied request's line can be written only while loudest is
	// enabled: error (its most severe level) with the access log on,
	// debug (its only level) with it off.
	loudest := logrus.ErrorLevel
	if !enabled {
		loudest = logrus.DebugLevel
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w}
			start := time.Now()
			returned := false
			isProxied := proxied(r)
			// The proxy fills the record only for a line that can be
			// written: with the access log off and debug lines dropped,
			// the request is not copied to carry it.
			if isProxied && log.Logger.IsLevelEnabled(loudest) {
				r = r.WithContext(outcome.NewContext(r.Context(), &rec.outcome))
			}
			o := &rec.outcome
			defer func() {
				status := rec.status
				switch {
				case o.Status == outcome.StatusClientClosed:
					status = o.Status
				case !rec.wroteHeader && !returned:
					// next panicked; Recovery, further out, answers 500.
					status = http.StatusInternalServerError
				case returned && o.Status != 0 && !o.Start.IsZero():
					// The proxy's record holds the status the client
					// effectively got: a stream whose error event was the
					// answer is that error's status, not 200 (docs/api.md,
					// "Streaming").
					status = o.Status
				case !rec.wroteHeader:
					status = http.StatusOK
				case o.Status >= 400 && status < 400:
					// An error the proxy gave under a 2xx already sent (a
					// stream's in-window error event as the final answer):
					// the line carries the error's status.
					status = o.Status
				}
				level := logrus.InfoLevel
				switch {
				case status >= 500 || o.Aborted:
					level = logrus.ErrorLevel
				case status >= 400:
					level = logrus.WarnLevel
				}
				if !isProxied || !enabled {
					level = logrus.DebugLevel
				}
				if !log.Logger.IsLevelEnabled(level) {
					return
				}
				line := accessLine{
					level: level, method: r.Method, path: r.URL.Path, status: status,
					duration: time.Since(start).Round(time.Microsecond), bytes: rec.bytes, client: r.RemoteAddr,
					proxied: isProxied, key: o.Key, upstream: o.TargetHost(), upstreamURL: o.UpstreamURL, group: o.Group, attempts: o.Attempts,
					aborted: o.Aborted, err: o.Error,
				}
				if !o.Start.IsZero() {
					// The proxy took the request: its record has the bytes.
					line.bytes = o.Bytes
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
