// Package testupstream is a recording upstream for tests: a real HTTP
// server that remembers what every request carried and answers as the test
// scripts it.
package testupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is what the upstream saw of one request.
type Request struct {
	Method, Path, RawPath, RawQuery, Host string
	Header                                http.Header
	BodyLen                               int
	BodySHA256                            string
	Body                                  []byte
	// Key is the API key the request carried, in whichever header.
	Key string
	// Cancelled is closed when the request's context ends before the
	// handler returned, i.e. the proxy cancelled it.
	Cancelled chan struct{}
}

// Server is a recording upstream. Handler decides the answers; nil answers
// 200 with a small JSON body. Fields are safe for concurrent use.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	requests []*Request
	handler  http.HandlerFunc
	notify   chan struct{}
}

// New starts a recording upstream, closed at the end of the test.
func New(t testing.TB, h http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{handler: h, notify: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NewUnstarted returns a recording upstream that is not started yet, for
// TLS or HTTP/2 setups.
func NewUnstarted(t testing.TB, h http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{handler: h, notify: make(chan struct{}, 1)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// SetHandler replaces the script.
func (s *Server) SetHandler(h http.HandlerFunc) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

// KeyOf returns the API key a request carries in any of the styles.
func KeyOf(h http.Header) string {
	if v := h.Get("Authorization"); strings.HasPrefix(v, "Bearer ") {
		return strings.TrimPrefix(v, "Bearer ")
	}
	for _, n := range []string{"Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	rec := &Request{
		Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), BodyLen: len(body), BodySHA256: hex.EncodeToString(sum[:]),
		Key: KeyOf(r.Header), Cancelled: make(chan struct{}), Body: body,
	}
	// The script may read the body too.
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	h := s.handler
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-r.Context().Done():
			close(rec.Cancelled)
		case <-done:
		}
	}()
	if h == nil {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[]}`)
		return
	}
	h(w, r)
}

// Requests returns what was received so far, in arrival order.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// Count is the number of requests received so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// WaitFor waits until at least n requests arrived, failing the test after
// the timeout.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []*Request {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if reqs := s.Requests(); len(reqs) >= n {
			return reqs
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			t.Fatalf("upstream got %d requests within %v; want %d", s.Count(), timeout, n)
		}
	}
}

// ClosedAddr returns a loopback address nothing listens on: a port that was
// bound and closed, so connecting is refused.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln := httptest.NewUnstartedServer(nil).Listener
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
