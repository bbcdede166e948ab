package middleware_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/middleware"
)

// explode is a handler that panics; its name is looked for in the stack.
func explode(w http.ResponseWriter, r *http.Request) {
	panic("boom: " + r.URL.Path)
}

// explodeAfterWriting panics after the response has started.
func explodeAfterWriting(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("partial"))
	http.NewResponseController(w).Flush()
	panic("boom after writing")
}

func TestRecoveryAnswers500AndLogsStack(t *testing.T) {
	tests := []struct {
		name  string
		chain func(log *logrus.Entry, h http.Handler) http.Handler
	}{
		{"alone", func(log *logrus.Entry, h http.Handler) http.Handler {
			return middleware.Recovery(log)(h)
		}},
		{"outside the access log", func(log *logrus.Entry, h http.Handler) http.Handler {
			return middleware.Chain(h, middleware.Recovery(log), middleware.Logging(log, true, func(*http.Request) bool { return true }))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, logrus.InfoLevel)
			srv := newServer(t, tt.chain(log, http.HandlerFunc(explode)))
			resp, body := do(t, newRequest(t, http.MethodGet, srv.URL+"/v1/panic?secret=1", nil))
			apierrtest.Check(t, resp, body, http.StatusInternalServerError, "internal_error")

			lines := logs.waitMsg(t, "recovered from panic", 1)
			e := lines[0]
			if got := e["level"]; got != "error" {
				t.Errorf("panic line level = %v; want error", got)
			}
			if got := e["panic"]; got != "boom: /v1/panic" {
				t.Errorf("panic line panic = %v; want %q", got, "boom: /v1/panic")
			}
			if got := e["path"]; got != "/v1/panic" {
				t.Errorf("panic line path = %v; want /v1/panic", got)
			}
			if stack, _ := e["stack"].(string); !strings.Contains(stack, "middleware_test.explode") {
				t.Errorf("panic line stack = %q; want it to name middleware_test.explode", stack)
			}
		})
	}
}

// TestRecoveryAfterWriting checks that a panic after the response started
// does not append an error body to it or change its status.
func TestRecoveryAfterWriting(t *testing.T) {
	tests := []struct {
		name  string
		chain func(log *logrus.Entry, h http.Handler) http.Handler
	}{
		{"alone", func(log *logrus.Entry, h http.Handler) http.Handler {
			return middleware.Recovery(log)(h)
		}},
		{"outside the access log", func(log *logrus.Entry, h http.Handler) http.Handler {
			return middleware.Chain(h, middleware.Recovery(log), middleware.Logging(log, true, func(*http.Request) bool { return true }))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, logrus.InfoLevel)
			srv := newServer(t, tt.chain(log, http.HandlerFunc(explodeAfterWriting)))
			c := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(c.CloseIdleConnections)
			resp, err := c.Get(srv.URL + "/v1/x")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Error("body read to a clean end; want the connection cut, so the truncation shows")
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d; want 200 (already sent)", resp.StatusCode)
			}
			if !strings.HasPrefix(string(body), "partial") || strings.Contains(string(body), "internal_error") {
				t.Errorf("body = %q; want %q with nothing appended", body, "partial")
			}
			logs.waitMsg(t, "recovered from panic", 1)
		})
	}
}

func TestRecoveryPassesOnErrAbortHandler(t *testing.T) {
	log, logs := newLogger(t, logrus.DebugLevel)
	mux := http.NewServeMux()
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/abort-mid-body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("partial"))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv := newServer(t, middleware.Recovery(log)(mux))

	tests := []struct {
		name string
		path string
	}{
		{"before the header", "/abort"},
		{"in the middle of the body", "/abort-mid-body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(c.CloseIdleConnections)
			resp, err := c.Get(srv.URL + tt.path)
			if err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil {
					t.Fatalf("GET %s = %d %q, complete; want a cut connection", tt.path, resp.StatusCode, body)
				}
				if !errors.Is(rerr, io.ErrUnexpectedEOF) {
					t.Logf("reading the body: %v", rerr)
				}
			}

			// The server survived and serves the next request.
			resp2, body := do(t, newRequest(t, http.MethodGet, srv.URL+"/ok", nil))
			if resp2.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Errorf("GET /ok after the abort = %d %q; want 200 %q", resp2.StatusCode, body, "ok")
			}
		})
	}
	if got := logs.withMsg(t, "recovered from panic"); len(got) != 0 {
		t.Errorf("ErrAbortHandler logged as a recovered panic: %v", got)
	}
}
