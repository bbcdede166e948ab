package server_test

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestPlainUpstreamGoesThroughH1Client: a request to a plain http
// upstream leaves its connection idle in h1client's pool, not in
// net/http's, and the next request reuses it.
func TestPlainUpstreamGoesThroughH1Client(t *testing.T) {
	var accepted atomic.Int64
	up := testupstream.NewUnstarted(t, nil)
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	up.Start()
	srv := testserver.Start(t, testserver.Options{Keys: []string{"sk-plain-0123456789abcdef"}, Upstreams: []string{up.URL}})
	for i := range 3 {
		if a := send(t, http.MethodPost, srv.URL+"/v1/chat/completions", "", chat("gpt-4o-mini")); a.status != http.StatusOK {
			t.Fatalf("request %d: status %d; want 200 (%s)", i, a.status, a.body)
		}
	}
	if got := srv.Upstream.IdleConns(); got != 1 {
		t.Errorf("h1client holds %d idle upstream connections after 3 sequential requests; want 1", got)
	}
	if got := accepted.Load(); got != 1 {
		t.Errorf("upstream accepted %d connections for 3 sequential requests; want 1 (reused)", got)
	}
}

// TestGroupsShareHTTP2Dials: each group's requests to an HTTP/2 upstream
// share connections as one group's do (docs/groups.md). The gate that
// makes them share takes over the transport's TLS dial, so it is made
// once for every group: made per group, each took the dial from the one
// before, and the groups built first dialed once per request when their
// connection's streams ran out.
func TestGroupsShareHTTP2Dials(t *testing.T) {
	const n, perConn = 40, 10
	// A burst's requests are each held until all n are in, so the n are
	// concurrent upstream and need n/perConn connections.
	type burst struct {
		arrived atomic.Int64
		allIn   chan struct{}
	}
	var cur atomic.Pointer[burst]
	var accepted atomic.Int64
	up := testupstream.NewUnstarted(t, func(w http.ResponseWriter, r *http.Request) {
		b := cur.Load()
		if b.arrived.Add(1) == n {
			close(b.allIn)
		}
		select {
		case <-b.allIn:
		case <-time.After(10 * time.Second):
			t.Errorf("upstream requests were not all in flight together within 10 s")
		}
		io.WriteString(w, `{"choices":[]}`)
	})
	up.EnableHTTP2 = true
	up.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: perConn}
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	names := []string{"alpha", "beta", "gamma"}
	groups := map[string][2]string{}
	for _, g := range names {
		groups[g] = [2]string{"sk-" + g + "-0123456789abcdef\n", "OPENAI_BASE_URL=" + up.URL + "\n"}
	}
	srv := testserver.Start(t, testserver.Options{Env: map[string]string{
		"GROUPS_DIR": groupsDir(t, groups), "KEYS_FILE": "", "UPSTREAM_CA_FILE": ca, "LOG_LEVEL": "error",
	}})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}}
	// One burst per group in turn, each group's first: the burst of a
	// group built before the last is what lost its gate.
	for _, g := range names {
		cur.Store(&burst{allIn: make(chan struct{})})
		srv.Upstream.CloseIdleConnections()
		before := accepted.Load()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := c.Post(srv.URL+"/proxy/"+g+"/v1/chat/completions", "application/json", nil)
				if err != nil {
					t.Errorf("group %s, request %d: %v", g, i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("group %s, request %d: status %d; want 200", g, i, resp.StatusCode)
				}
			})
		}
		wg.Wait()
		// As TestHTTP2StreamsOverflowToFewConnections: twice the need
		// tells sharing from a slip or two; without it, every request
		// that found the streams full dialed.
		got, need := accepted.Load()-before, int64(n/perConn)
		t.Logf("group %s: %d connections for %d requests at %d streams each", g, got, n, perConn)
		if got < need || got > 2*need {
			t.Errorf("group %s: upstream accepted %d connections for %d concurrent requests at %d streams each; want %d to %d", g, got, n, perConn, need, 2*need)
		}
	}
}
