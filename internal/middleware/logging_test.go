package middleware_test

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr/apierrtest"
	"github.com/gpt-load/gpt-load/internal/middleware"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// isProxied treats every path but /stats as proxied, as the handler does
// for its management endpoints.
func isProxied(r *http.Request) bool { return r.URL.Path != "/stats" }

// wrapper is a ResponseWriter of someone else's between the access log and
// the proxy, as a middleware further in might add.
type wrapper struct{ http.ResponseWriter }

func (w wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusHandler answers with the status in the "status" query parameter,
// through a wrapper, filling the outcome record as the proxy would.
func statusHandler(w http.ResponseWriter, r *http.Request) {
	ww := wrapper{w}
	// As the proxy does: fill the outcome record the access log handed in.
	if o := outcome.FromContext(r.Context()); o != nil {
		*o = outcome.Record{Start: time.Now(), Key: secret.NewKey("sk-abcdefghijklmnopqrstuvwxyz"),
			Target:   upstream.NewTarget(&url.URL{Scheme: "https", Host: "upstream.example:443"}, upstream.Bearer),
			Attempts: 2, Bytes: int64(len("hello"))}
	}
	code := http.StatusOK
	if n, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
		code = n
	}
	ww.Header().Set("Location", "/elsewhere")
	ww.WriteHeader(code)
	io.WriteString(ww, "hello")
}

func TestLoggingAccessLine(t *testing.T) {
	log, logs := newLogger(t, logrus.InfoLevel)
	h, done := served(middleware.Logging(log, true, isProxied)(http.HandlerFunc(statusHandler)))
	srv := newServer(t, h)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		status    string
		wantLevel string
	}{
		{"200", "info"},
		{"302", "info"},
		{"399", "info"},
		{"400", "warning"},
		{"401", "warning"},
		{"404", "warning"},
		{"429", "warning"},
		{"500", "error"},
		{"503", "error"},
		{"599", "error"},
	}
	for i, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			resp, err := c.Get(srv.URL + "/v1/chat/completions?key=query-secret-123&status=" + tt.status)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			waitServed(t, done)

			lines := logs.withMsg(t, "request")
			if len(lines) != i+1 {
				t.Fatalf("%d access lines after %d requests; want %d\n%s", len(lines), i+1, i+1, logs.String())
			}
			e := lines[i]
			want := map[string]any{
				"level":    tt.wantLevel,
				"method":   "GET",
				"path":     "/v1/chat/completions",
				"status":   float64(resp.StatusCode),
				"key":      "sk-abc…wxyz",
				"upstream": "upstream.example:443",
				"attempts": float64(2),
				"bytes":    float64(len("hello")),
			}
			for k, v := range want {
				if e[k] != v {
					t.Errorf("access line %s = %v; want %v", k, e[k], v)
				}
			}
			if d, err := time.ParseDuration(e["duration"].(string)); err != nil || d < 0 {
				t.Errorf("access line duration = %v; want a duration", e["duration"])
			}
			if s := logs.String(); strings.Contains(s, "query-secret-123") || strings.Contains(s, "status="+tt.status) {
				t.Errorf("log holds the query string:\n%s", s)
			}
		})
	}
}

func TestLoggingLevels(t *testing.T) {
	tests := []struct {
		name      string
		level     logrus.Level
		enabled   bool
		path      string
		wantLevel string // "" means no access line
	}{
		{"proxied at info", logrus.InfoLevel, true, "/v1/models", "info"},
		{"management at info", logrus.InfoLevel, true, "/stats", ""},
		{"management at debug", logrus.DebugLevel, true, "/stats", "debug"},
		{"request log off at info", logrus.InfoLevel, false, "/v1/models", ""},
		{"request log off at debug", logrus.DebugLevel, false, "/v1/models", "debug"},
		{"proxied 5xx with log level error", logrus.ErrorLevel, true, "/v1/models?status=500", "error"},
		{"proxied 2xx with log level warn", logrus.WarnLevel, true, "/v1/models", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, tt.level)
			h, done := served(middleware.Logging(log, tt.enabled, isProxied)(http.HandlerFunc(statusHandler)))
			srv := newServer(t, h)
			do(t, newRequest(t, http.MethodGet, srv.URL+tt.path, nil))
			waitServed(t, done)

			lines := logs.withMsg(t, "request")
			if tt.wantLevel == "" {
				if len(lines) != 0 {
					t.Errorf("access lines %v; want none", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("%d access lines; want 1\n%s", len(lines), logs.String())
			}
			if got := lines[0]["level"]; got != tt.wantLevel {
				t.Errorf("access line level = %v; want %s", got, tt.wantLevel)
			}
		})
	}
}

func TestLoggingStatusWithoutWriteHeader(t *testing.T) {
	tests := []struct {
		name       string
		h          http.HandlerFunc
		wantStatus float64
		wantBytes  float64
	}{
		{"write only", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "abc") }, 200, 3},
		{"nothing", func(w http.ResponseWriter, r *http.Request) {}, 200, 0},
		{"client closed", func(w http.ResponseWriter, r *http.Request) {
			*outcome.FromContext(r.Context()) = outcome.Record{Start: time.Now(), Status: outcome.StatusClientClosed, Attempts: 1}
		}, outcome.StatusClientClosed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, logrus.InfoLevel)
			h, done := served(middleware.Logging(log, true, isProxied)(tt.h))
			srv := newServer(t, h)
			do(t, newRequest(t, http.MethodPost, srv.URL+"/v1/x", nil))
			waitServed(t, done)
			lines := logs.withMsg(t, "request")
			if len(lines) != 1 {
				t.Fatalf("%d access lines; want 1", len(lines))
			}
			if got := lines[0]["status"]; got != tt.wantStatus {
				t.Errorf("status = %v; want %v", got, tt.wantStatus)
			}
			if got := lines[0]["bytes"]; got != tt.wantBytes {
				t.Errorf("bytes = %v; want %v", got, tt.wantBytes)
			}
		})
	}
}

// TestLoggingFlush checks that a handler behind the access log can flush:
// the client reads the first event while the handler still waits for it.
func TestLoggingFlush(t *testing.T) {
	tests := []struct {
		name string
		wrap func(http.ResponseWriter) http.ResponseWriter
	}{
		{"recorder", func(w http.ResponseWriter) http.ResponseWriter { return w }},
		{"recorder behind a wrapper", func(w http.ResponseWriter) http.ResponseWriter { return wrapper{w} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, logrus.InfoLevel)
			clientGotFirst := make(chan struct{})
			release := sync.OnceFunc(func() { close(clientGotFirst) })
			flushErr := make(chan error, 1)
			stalled := make(chan struct{}, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w = tt.wrap(w)
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: one\n\n")
				flushErr <- http.NewResponseController(w).Flush()
				select {
				case <-clientGotFirst:
				case <-time.After(waitTimeout):
					stalled <- struct{}{}
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: two\n\n")
			})
			srv := newServer(t, middleware.Chain(h, middleware.Recovery(log), middleware.Logging(log, true, isProxied)))
			t.Cleanup(release)

			resp, err := http.Get(srv.URL + "/v1/stream")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			if err := <-flushErr; err != nil {
				t.Fatalf("Flush() = %v; want nil", err)
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first line = %q, %v; want %q", line, err, "data: one\n")
			}
			select {
			case <-stalled:
				t.Errorf("the first event reached the client only after the handler returned; want it flushed at once")
			default:
			}
			release()
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Errorf("rest = %q, %v; want %q", rest, err, "\ndata: two\n\n")
			}
			lines := logs.waitMsg(t, "request", 1)
			if got, want := lines[0]["bytes"], float64(len("data: one\n\ndata: two\n\n")); got != want {
				t.Errorf("access line bytes = %v; want %v", got, want)
			}
		})
	}
}

// TestLoggingPanic checks that the access line of a request whose handler
// panicked reports the 500 the client got, at error level.
func TestLoggingPanic(t *testing.T) {
	log, logs := newLogger(t, logrus.InfoLevel)
	srv := newServer(t, middleware.Chain(http.HandlerFunc(explode), middleware.Recovery(log), middleware.Logging(log, true, isProxied)))
	resp, body := do(t, newRequest(t, http.MethodGet, srv.URL+"/v1/x", nil))
	apierrtest.Check(t, resp, body, http.StatusInternalServerError, "internal_error")
	lines := logs.waitMsg(t, "request", 1)
	if got := lines[0]["status"]; got != float64(http.StatusInternalServerError) {
		t.Errorf("access line status = %v; want 500", got)
	}
	if got := lines[0]["level"]; got != "error" {
		t.Errorf("access line level = %v; want error", got)
	}
}

// TestLoggingCarriesRecordOnlyWhenALineCanBeWritten: the outcome record is
// put in the request's context when some access line can be written, at
// warn level too (a 4xx line then still names key and upstream), and left
// out when the access log is off and debug lines are dropped.
func TestLoggingCarriesRecordOnlyWhenALineCanBeWritten(t *testing.T) {
	tests := []struct {
		name       string
		level      logrus.Level
		enabled    bool
		wantRecord bool
	}{
		{"log on, info", logrus.InfoLevel, true, true},
		{"log on, warn", logrus.WarnLevel, true, true},
		{"log off, info", logrus.InfoLevel, false, false},
		{"log off, debug", logrus.DebugLevel, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger(t, tt.level)
			sawRecord := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sawRecord <- outcome.FromContext(r.Context()) != nil
				statusHandler(w, r)
			})
			srv := newServer(t, middleware.Logging(log, tt.enabled, isProxied)(h))
			resp, _ := do(t, newRequest(t, http.MethodGet, srv.URL+"/v1/x?status=404", nil))
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("status %d; want 404", resp.StatusCode)
			}
			if got := <-sawRecord; got != tt.wantRecord {
				t.Errorf("record in the context: %v; want %v", got, tt.wantRecord)
			}
			if !tt.wantRecord {
				return
			}
			line := logs.waitMsg(t, "request", 1)[0]
			if line["key"] != "sk-abc…wxyz" || line["upstream"] != "upstream.example:443" {
				t.Errorf("access line key %v, upstream %v; want the record's", line["key"], line["upstream"])
			}
		})
	}
}
