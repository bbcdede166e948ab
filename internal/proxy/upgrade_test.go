package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A 101 answer passes through: ReverseProxy checks the answer's Upgrade
// header against the request's and then joins the two connections, so the
// answer's headers must still be in it when modifyResponse returns.
func TestUpgradePassesThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Upstream: kept\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err == nil {
			brw.WriteString("echo: " + line)
			brw.Flush()
		}
	}))
	t.Cleanup(up.Close)
	e := start(t, testKeys, []string{up.URL}, nil)

	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /v1/realtime HTTP/1.1\r\nHost: proxy\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("X-Upstream") != "kept" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("answer %d %v %q; want 101 with Upgrade: echo and the upstream's headers", resp.StatusCode, resp.Header, body)
	}
	io.WriteString(conn, "hello\n")
	got, err := br.ReadString('\n')
	if err != nil || got != "echo: hello\n" {
		t.Errorf("through the upgraded connection: %q, %v; want %q", got, err, "echo: hello\n")
	}
}
