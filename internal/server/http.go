package server

import (
	"log"
	"net/http"
	"time"
)

// maxHeaderBytes bounds a request's header block; beyond it the client
// gets 431 (docs/api.md, "Bad input and faults").
const maxHeaderBytes = 1 << 20

// HTTPServer returns the http.Server that serves s, with the timeouts of
// the configuration. cmd/gpt-load serves with it, and the tests of bad
// client input run against it, so they see exactly what production does.
// errorLog receives net/http's own messages (TLS noise, bad requests).
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	cfg := s.cfg
	return &http.Server{
		Handler: writeDeadline(s.handler, cfg.ServerWriteTimeout),
		// A client that is slow to send its headers (slow-loris) holds
		// one connection for this long at most, and nothing else: a
		// generous bound still fits any real client.
		ReadHeaderTimeout: min(30*time.Second, nonZero(cfg.ServerReadTimeout, 30*time.Second)),
		// The whole request, body included (SERVER_READ_TIMEOUT); a body
		// stalled past it is answered 408 by the proxy.
		ReadTimeout: cfg.ServerReadTimeout,
		// No WriteTimeout here: net/http's would cut a stream that is still
		// moving. writeDeadline applies SERVER_WRITE_TIMEOUT per write.
		WriteTimeout: 0,
		// Keep-alive connections waiting for their next request.
		IdleTimeout:    cfg.ServerIdleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       errorLog,
	}
}

func nonZero(d, fallback time.Duration) time.Duration {
	if d == 0 {
		return fallback
	}
	return d
}

// writeDeadline applies SERVER_WRITE_TIMEOUT (d) to h's responses as a
// deadline that moves with the data: each write must complete within d of
// the one before. A client that stops reading is cut after d; a stream
// that keeps moving is never cut, however long it runs (docs/api.md,
// "Streaming"). d == 0 means no deadline.
func writeDeadline(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, d: d}
		// Set at the start too: with no server WriteTimeout, net/http
		// leaves a keep-alive connection's last deadline in place, and
		// its own writes (100 Continue) would meet an expired one.
		dw.extend()
		h.ServeHTTP(dw, r)
	})
}

// deadlineWriter pushes the connection's write deadline forward before
// writes. To keep the cost off every small SSE write, the deadline is only
// moved once less than half of d is left, so a stalled write is cut after
// between d/2 and d. It implements Unwrap, so http.ResponseController and
// the access log see through it.
type deadlineWriter struct {
	http.ResponseWriter
	d        time.Duration
	deadline time.Time // zero: none set yet
}

func (w *deadlineWriter) extend() {
	now := time.Now()
	if !w.deadline.IsZero() && w.deadline.Sub(now) > w.d/2 {
		return
	}
	w.deadline = now.Add(w.d)
	// An error means the writer cannot take deadlines (a test recorder):
	// then there is nothing to extend.
	http.NewResponseController(w.ResponseWriter).SetWriteDeadline(w.deadline)
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// FlushError pushes buffered data to the client, which is a write too.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *deadlineWriter) Flush() { w.FlushError() }

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
