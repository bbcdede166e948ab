package main

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// TestUpstreamCAFile runs gpt-load against a real TLS upstream whose
// certificate no system root signs: with UPSTREAM_CA_FILE naming it the
// request goes through, over HTTP/2; without, the handshake is refused and
// the upstream never sees a request.
func TestUpstreamCAFile(t *testing.T) {
	var proto atomic.Value // the protocol of the last request the upstream saw
	up := testupstream.NewUnstarted(t, func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[]}`)
	})
	up.EnableHTTP2 = true
	// Refused handshakes are expected below; keep them out of the test log.
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()

	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	caFile := filepath.Join(dir, "upstream-ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	get := func(t *testing.T, url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	t.Run("trusted with the file", func(t *testing.T) {
		url, _ := serving(t, map[string]string{"KEYS_FILE": keys, "OPENAI_BASE_URL": up.URL, "UPSTREAM_CA_FILE": caFile, "LOG_LEVEL": "error"}, io.Discard)
		before := up.Count()
		if code, body := get(t, url); code != http.StatusOK {
			t.Fatalf("GET /v1/models via gpt-load = %d %s; want 200", code, body)
		}
		if n := up.Count() - before; n != 1 {
			t.Errorf("upstream saw %d requests; want 1", n)
		}
		if p, _ := proto.Load().(string); p != "HTTP/2.0" {
			t.Errorf("upstream request protocol = %q; want HTTP/2.0", p)
		}
	})

	t.Run("refused without it", func(t *testing.T) {
		url, _ := serving(t, map[string]string{"KEYS_FILE": keys, "OPENAI_BASE_URL": up.URL, "MAX_RETRIES": "0", "LOG_LEVEL": "error"}, io.Discard)
		before := up.Count()
		code, body := get(t, url)
		if code != http.StatusBadGateway {
			t.Errorf("GET /v1/models via gpt-load = %d %s; want 502", code, body)
		}
		if n := up.Count() - before; n != 0 {
			t.Errorf("upstream saw %d requests over an unverified connection; want 0", n)
		}
		if strings.Contains(body, testKeys[0]) {
			t.Error("error body shows a key")
		}
	})
}
