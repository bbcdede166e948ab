package middleware

import (
	"net/http"
	"runtime/debug"

	"github.com/sirupsen/logrus"

	apierr "github.com/gpt-load/gpt-load/internal/errors"
)

// Recovery turns a panic in h into a 500 internal_error answer (when nothing
// was written yet) and a log line with the stack, so one bad request never
// takes the process down. http.ErrAbortHandler is passed on: it is how
// ReverseProxy asks the server to cut a response it cannot finish.
func Recovery(log *logrus.Entry) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
				if rec := findRecorder(w); rec == nil || !rec.wroteHeader {
					apierr.Write(w, apierr.New(http.StatusInternalServerError, apierr.CodeInternal, "internal error"))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
