// Command badclients measures what hostile or idle clients cost gpt-load
// (docs/api.md, "Forwarding" and "Bad input and faults"): it starts the
// binary against a mock upstream, opens the connections, and reads the
// proxy's resident memory from /proc. It prints Markdown rows for
// docs/benchmarks.md. Everything is on 127.0.0.1 and bounded in count and
// time.
//
//	go run ./scripts/badclients -bin bin/gpt-load -upstream http://127.0.0.1:PORT
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/procstat"
)

func main() {
	bin := flag.String("bin", "bin/gpt-load", "gpt-load binary")
	upstream := flag.String("upstream", "", "upstream base URL (a mock on loopback)")
	declaring := flag.Int("declaring", 1000, "clients that declare 32 MiB and send 1 KiB")
	idle := flag.Int("idle", 10000, "idle keep-alive connections")
	flag.Parse()
	if *upstream == "" {
		fail("-upstream is required")
	}
	fmt.Println("| case | gpt-load RSS before (MiB) | with the clients (MiB) | per client |")
	fmt.Println("|---|---|---|---|")
	run(*bin, *upstream, fmt.Sprintf("%d clients each declaring 32 MiB and sending 1 KiB", *declaring), *declaring, declare)
	run(*bin, *upstream, fmt.Sprintf("%d idle keep-alive connections (one GET /health each)", *idle), *idle, keepAlive)
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "badclients: "+format+"\n", a...)
	os.Exit(1)
}

// run starts a fresh gpt-load, opens n connections with open, and reports
// the RSS before and once all are open.
func run(bin, upstream, name string, n int, open func(addr string) (net.Conn, error)) {
	dir, err := os.MkdirTemp("", "badclients")
	if err != nil {
		fail("%v", err)
	}
	defer os.RemoveAll(dir)
	keys := filepath.Join(dir, "keys.txt")
	os.WriteFile(keys, []byte("sk-bench-000000000000000000000000000000000001\n"), 0o600)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HOST=127.0.0.1", "PORT="+strconv.Itoa(port), "KEYS_FILE="+keys,
		"OPENAI_BASE_URL="+upstream, "LOG_LEVEL=warn", "LOG_ENABLE_REQUEST=false", "MAX_CONCURRENT_REQUESTS=1000")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail("%v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			fail("gpt-load did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := rss(cmd.Process.Pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := open(addr)
		if err != nil {
			fail("%s: connection %d: %v", name, len(conns), err)
		}
		conns = append(conns, c)
	}
	// Let the server take in what was sent, then sample for a second.
	var peak int64
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, rss(cmd.Process.Pid))
	}
	fmt.Printf("| %s | %.1f | %.1f | %.1f KiB |\n", name, mib(before), mib(peak), float64(peak-before)/float64(n)/1024)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// declare opens a request that declares a 32 MiB body and sends 1 KiB of
// it, then nothing.
func declare(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		32<<20, strings.Repeat("a", 1024))
	return c, err
}

// keepAlive makes one request and leaves the connection open and idle.
func keepAlive(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 16), nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, nil
}

// rss is a process's resident set size in bytes.
func rss(pid int) int64 {
	n, err := procstat.RSS(pid)
	if err != nil {
		fail("%v", err)
	}
	return n
}
