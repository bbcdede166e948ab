package providersim

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileFaults checks the fault modes of issue 19: a 5xx whose body
// stalls, a 200 whose chunked JSON stalls, a body never read, keys
// echoed in headers and in compressed error bodies; and SetTrace and
// Unstall.
func TestHostileFaults(t *testing.T) {
	s := start(t, Config{StallMax: Duration(10 * time.Second), Keys: []Key{{Key: keyGood}, {Key: keyRevoked, State: KeyRevoked}}})
	url := s.URLs()[0]
	var mu sync.Mutex
	traced := map[string]Fault{}
	s.SetTrace(func(a Attempt) {
		mu.Lock()
		traced[a.Header.Get(TraceHeader)] = a.Fault
		mu.Unlock()
	})
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}, Timeout: 5 * time.Second}
	do := func(id, key string, body io.Reader) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", body)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set(TraceHeader, id)
		return c.Do(req)
	}
	// Each stall below is ended by Unstall after 200 ms.
	unstallSoon := func() {
		time.AfterFunc(200*time.Millisecond, s.Unstall)
	}

	s.SetFault(0, FaultStallError)
	statuses := map[int]bool{}
	for i := range 2 {
		unstallSoon()
		resp, err := do("stall_error", keyGood, strings.NewReader(chatJSON("gpt-4o", false)))
		if err != nil {
			t.Fatalf("stall_error: %v", err)
		}
		statuses[resp.StatusCode] = true
		began := time.Now()
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || time.Since(began) < 100*time.Millisecond || !bytes.HasPrefix(b, []byte(`{"error":`)) {
			t.Errorf("stall_error body %d = %q, %v after %v; want a start, then a stall ended short", i, b, err, time.Since(began))
		}
		s.Reset()
		s.SetFault(0, FaultStallError)
	}
	if !statuses[500] || !statuses[503] {
		t.Errorf("stall_error statuses %v; want 500 and 503", statuses)
	}

	s.SetFault(0, FaultStallBody)
	for range 2 {
		unstallSoon()
		resp, err := do("stall_body", keyGood, strings.NewReader(chatJSON("gpt-4o", false)))
		if err != nil {
			t.Fatalf("stall_body: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err == nil {
			t.Errorf("stall_body = %d %q, %v; want a 200 ended short", resp.StatusCode, b, err)
		}
		s.Reset()
		s.SetFault(0, FaultStallBody)
	}

	s.SetFault(0, FaultNoRead)
	big := append([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"`), bytes.Repeat([]byte("x"), 6<<20)...)
	big = append(big, `"}]}`...)
	unstallSoon()
	began := time.Now()
	if resp, err := do("no_read", keyGood, bytes.NewReader(big)); err == nil {
		resp.Body.Close()
		t.Errorf("no_read answered %d; want no answer", resp.StatusCode)
	} else if time.Since(began) < 150*time.Millisecond {
		t.Errorf("no_read: %v after %v; want a stall first", err, time.Since(began))
	}
	s.Reset()

	s.SetFault(0, FaultEchoKey)
	codings := map[string]bool{}
	for i := range 60 {
		key := keyGood
		if i%2 == 1 {
			key = keyRevoked
		}
		resp, err := do("echo", key, strings.NewReader(chatJSON("gpt-4o", false)))
		if err != nil {
			t.Fatalf("echo_key: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, h := range []string{"X-Api-Key", "Location", "WWW-Authenticate"} {
			if !strings.Contains(resp.Header.Get(h), key) {
				t.Errorf("echo_key %d: %s = %q; want the key", resp.StatusCode, h, resp.Header.Get(h))
			}
		}
		if resp.StatusCode < 400 {
			continue
		}
		ce := resp.Header.Get("Content-Encoding")
		codings[ce] = true
		plain := decodeBody(t, ce, b)
		for _, q := range []string{`\u0027` + key + `\u0027`, `\n` + key, `%3D` + key} {
			if !bytes.Contains(plain, []byte(q)) {
				t.Errorf("echo_key %d (%q): body lacks %s: %.200s", resp.StatusCode, ce, q, plain)
			}
		}
	}
	for _, ce := range []string{"gzip", "GZIP", "deflate", ""} {
		if !codings[ce] {
			t.Errorf("echo_key codings %v; want %q among them", codings, ce)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, f := range map[string]Fault{"stall_error": FaultStallError, "stall_body": FaultStallBody, "no_read": FaultNoRead, "echo": FaultEchoKey} {
		if traced[id] != f {
			t.Errorf("trace of %s = %q; want %q", id, traced[id], f)
		}
	}
}

// decodeBody decodes b from ce (gzip, zlib or raw deflate).
func decodeBody(t *testing.T, ce string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	switch strings.ToLower(ce) {
	case "":
		return b
	case "gzip":
		r, err = gzip.NewReader(bytes.NewReader(b))
	case "deflate":
		if r, err = zlib.NewReader(bytes.NewReader(b)); err != nil {
			r, err = flate.NewReader(bytes.NewReader(b)), nil
		}
	}
	if err != nil {
		t.Fatalf("decoding %s: %v", ce, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", ce, err)
	}
	return out
}
