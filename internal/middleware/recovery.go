package middleware

import (
	"net/http"
	"runtime/debug"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr"
)

// Recovery turns a panic in h into a 500 internal_error answer (when nothing
// was written yet) and a log line with the stack, so one bad request never
// takes the process down. http.ErrAbortHandler is passed on: it is how
// ReverseProxy asks the server to cut a response it cannot finish.
func Recovery(log *logrus.Entry) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Recovery runs outside the access log, so the recorder is not
			// in w's Unwrap chain: track the start of the response here.
			sw := &startWriter{ResponseWriter: w}
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.WithFields(logrus.Fields{
					"panic":  v,
					"method": r.Method,
					"path":   r.URL.Path,
					"stack":  string(debug.Stack()),
				}).Error("recovered from panic")
				if sw.started {
					// Half an answer must not look whole: cut the connection
					// so the client sees the truncation.
					panic(http.ErrAbortHandler)
				}
				apierr.Write(w, apierr.New(http.StatusInternalServerError, apierr.CodeInternal, "internal error"))
			}()
			next.ServeHTTP(sw, r)
		})
	}
}

// startWriter records whether the response has started. It implements
// Unwrap so http.ResponseController and Annotate see through it.
type startWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startWriter) WriteHeader(code int) {
	if code >= 200 {
		w.started = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *startWriter) Write(p []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(p)
}

func (w *startWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
