// Command mockupstream is a small, fast stand-in for an OpenAI-compatible
// upstream, used by the load test (scripts/loadtest.sh). It is not part of
// the proxy.
//
//	POST|GET /v1/chat/completions      a fixed ~600-byte chat.completion
//	         ?stream=1&chunks=20&gap_ms=0  (or "stream":true in the JSON body)
//	                                   server-sent events, flushed one by one
//	POST     /v1/files, /v1/echo       {"bytes":N,"sha256":"…"} of the body
//	GET      /v1/models                a one-model list
//	GET      /_mock/stats              connections accepted, open, requests
//	                                   (and how many of them came over HTTP/2)
//	POST     /_mock/reset              zero the counters
//
// Any Authorization is accepted. The listen address actually used is the
// first line on stdout. The hot paths answer from precomputed bytes so the
// mock costs as little CPU as possible next to what it measures.
//
// With -tls it speaks TLS, offering HTTP/2 and HTTP/1.1 by ALPN, like the
// real providers' front ends. Its certificate is made at start: a
// self-signed CA (written as PEM to -ca-out, for the clients to trust) and
// a leaf for 127.0.0.1, ::1 and localhost signed by it. Nothing is stored
// beyond that file; every run has a new CA.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gpt-load/gpt-load/internal/ascii"
)

// completion is the non-streaming answer, about 600 bytes.
var completion = []byte(`{"id":"chatcmpl-mock0000000000000000000000001","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_mock0001","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock upstream. Every answer has this fixed size, so every request moves the same bytes.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":36,"total_tokens":60,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}`)

var (
	chunkEvent = []byte("data: {\"id\":\"chatcmpl-mock0000000000000000000000001\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n")
	lastEvent  = []byte("data: {\"id\":\"chatcmpl-mock0000000000000000000000001\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n")
	doneEvent  = []byte("data: [DONE]\n\n")
	models     = []byte(`{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":"mock"}]}`)
	notFound   = []byte(`{"error":{"message":"mockupstream: no such endpoint","type":"invalid_request_error","code":"not_found"}}`)
	badMethod  = []byte(`{"error":{"message":"mockupstream: method not allowed","type":"invalid_request_error","code":"method_not_allowed"}}`)
)

// Header values shared by every response. net/http only reads them.
var (
	hJSON        = []string{"application/json"}
	hSSE         = []string{"text/event-stream"}
	hNoCache     = []string{"no-cache"}
	hCompleteLen = []string{strconv.Itoa(len(completion))}
	hModelsLen   = []string{strconv.Itoa(len(models))}
)

// The body of a chat request is read into a pooled buffer so it can be
// searched for "stream":true without allocating. Only the first maxScan
// bytes are searched; the rest is drained.
const maxScan = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxScan); return &b }}

type mock struct {
	accepted atomic.Int64 // TCP connections accepted (StateNew)
	open     atomic.Int64 // connections currently open
	requests atomic.Int64 // requests served, /_mock/ excluded
	h2       atomic.Int64 // … of which over HTTP/2
}

func (m *mock) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		m.accepted.Add(1)
		m.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		m.open.Add(-1)
	}
}

func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 && r.URL.Path != "/_mock/stats" && r.URL.Path != "/_mock/reset" {
		m.h2.Add(1)
	}
	switch r.URL.Path {
	case "/v1/chat/completions":
		m.requests.Add(1)
		m.chat(w, r)
	case "/v1/files", "/v1/echo":
		m.requests.Add(1)
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			writeFixed(w, http.StatusMethodNotAllowed, badMethod)
			return
		}
		m.echo(w, r)
	case "/v1/models":
		m.requests.Add(1)
		h := w.Header()
		h["Content-Type"] = hJSON
		h["Content-Length"] = hModelsLen
		w.Write(models)
	case "/_mock/stats":
		w.Header()["Content-Type"] = hJSON
		fmt.Fprintf(w, `{"connections":%d,"open_connections":%d,"requests":%d,"http2_requests":%d}`+"\n",
			m.accepted.Load(), m.open.Load(), m.requests.Load(), m.h2.Load())
	case "/_mock/reset":
		if r.Method != http.MethodPost {
			writeFixed(w, http.StatusMethodNotAllowed, badMethod)
			return
		}
		m.accepted.Store(0)
		m.requests.Store(0)
		m.h2.Store(0)
		w.Header()["Content-Type"] = hJSON
		io.WriteString(w, `{"reset":true}`+"\n")
	default:
		m.requests.Add(1)
		writeFixed(w, http.StatusNotFound, notFound)
	}
}

func writeFixed(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = hJSON
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func (m *mock) chat(w http.ResponseWriter, r *http.Request) {
	stream := false
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		bp := bufPool.Get().(*[]byte)
		n, _ := io.ReadFull(r.Body, *bp)
		stream = wantsStream((*bp)[:n])
		bufPool.Put(bp)
		if n == maxScan {
			io.Copy(io.Discard, r.Body)
		}
	}
	chunks, gap := 20, time.Duration(0)
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		switch q.Get("stream") {
		case "1", "true", "yes", "on":
			stream = true
		case "0", "false", "no", "off":
			stream = false
		}
		if v, err := strconv.Atoi(q.Get("chunks")); err == nil && v >= 1 && v <= 1_000_000 {
			chunks = v
		}
		if v, err := strconv.Atoi(q.Get("gap_ms")); err == nil && v >= 0 && v <= 600_000 {
			gap = time.Duration(v) * time.Millisecond
		}
	}
	if !stream {
		h := w.Header()
		h["Content-Type"] = hJSON
		h["Content-Length"] = hCompleteLen
		w.Write(completion)
		return
	}
	sse(w, r, chunks, gap)
}

// sse writes chunks events (the last one carries finish_reason) and
// [DONE], gap apart, flushing each; it stops when the client goes away.
func sse(w http.ResponseWriter, r *http.Request, chunks int, gap time.Duration) {
	h := w.Header()
	h["Content-Type"] = hSSE
	h["Cache-Control"] = hNoCache
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	var t *time.Timer
	for i := 1; i <= chunks; i++ {
		ev := chunkEvent
		if i == chunks {
			ev = lastEvent
		}
		if _, err := w.Write(ev); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if gap > 0 && i < chunks {
			if t == nil {
				t = time.NewTimer(gap)
			} else {
				t.Reset(gap)
			}
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
	}
	w.Write(doneEvent)
	if fl != nil {
		fl.Flush()
	}
}

// wantsStream reports whether a JSON body has "stream" set to true. It is
// a byte scan, not a parser: good enough for the bodies clients send.
func wantsStream(b []byte) bool {
	key := []byte(`"stream"`)
	for {
		i := bytes.Index(b, key)
		if i < 0 {
			return false
		}
		b = b[i+len(key):]
		j := 0
		for j < len(b) && ascii.IsSpace(b[j]) {
			j++
		}
		if j < len(b) && b[j] == ':' {
			j++
			for j < len(b) && ascii.IsSpace(b[j]) {
				j++
			}
			return bytes.HasPrefix(b[j:], []byte("true"))
		}
	}
}

func (m *mock) echo(w http.ResponseWriter, r *http.Request) {
	sum := sha256.New()
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(sum, r.Body, *bp)
	bufPool.Put(bp)
	if err != nil {
		writeFixed(w, http.StatusBadRequest, []byte(fmt.Sprintf(
			`{"error":{"message":"mockupstream: reading the body after %d bytes failed","type":"invalid_request_error","code":"body_read"}}`, n)))
		return
	}
	body := fmt.Sprintf(`{"object":"mock.echo","bytes":%d,"sha256":"%s"}`+"\n", n, hex.EncodeToString(sum.Sum(nil)))
	writeFixed(w, http.StatusOK, []byte(body))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	useTLS := flag.Bool("tls", false, "serve TLS (HTTP/2 and HTTP/1.1 by ALPN) with a certificate made at start")
	caOut := flag.String("ca-out", "", "with -tls: write the CA certificate (PEM) here")
	maxStreams := flag.Int("max-streams", 250, "with -tls: HTTP/2 concurrent streams per connection the mock allows (SETTINGS_MAX_CONCURRENT_STREAMS)")
	flag.Parse()
	if *useTLS && *caOut == "" {
		fmt.Fprintln(os.Stderr, "mockupstream: -tls needs -ca-out (where clients find the CA to trust)")
		os.Exit(2)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockupstream:", err)
		os.Exit(1)
	}
	m := &mock{}
	srv := &http.Server{
		Handler:           m,
		ConnState:         m.connState,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	if *useTLS {
		cert, err := newCert(*caOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mockupstream:", err)
			os.Exit(1)
		}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: *maxStreams}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	// The address goes out only once the certificate is written, so a
	// caller that waits for it finds the CA file in place.
	fmt.Println(ln.Addr().String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		srv.Close()
	}()
	serve := srv.Serve
	if *useTLS {
		// ServeTLS offers h2 and http/1.1 by ALPN, from srv.Protocols.
		serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "mockupstream:", err)
		os.Exit(1)
	}
}
