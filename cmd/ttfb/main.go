// Command ttfb is a measurement probe for the load test
// (scripts/loadtest.sh): it opens -n streaming requests at the same moment,
// -rounds times, and prints the percentiles of two delays per request:
//
//   - ttfb: from sending the request to the first byte of the response
//     (httptrace GotFirstResponseByte, i.e. the status line);
//   - first event: to the first byte of the response body, the first SSE
//     event a client can act on.
//
// It sends a fixed number of requests and reads every stream to its end; it
// is not a load generator (wrk is used for load).
//
// The last line on stdout is machine-readable:
//
//	requests=750 errors=0 ttfb_p50_ms=1.234 ttfb_p99_ms=5.678 event_p50_ms=… event_p99_ms=… ttfb_max_ms=…
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type sample struct {
	ttfb, event time.Duration
	err         error
}

func main() {
	url := flag.String("url", "", "URL of the streaming endpoint (required)")
	n := flag.Int("n", 150, "concurrent requests per round")
	rounds := flag.Int("rounds", 5, "measured rounds")
	warmup := flag.Int("warmup", 1, "rounds run first and not measured (they open the connections)")
	method := flag.String("method", http.MethodPost, "HTTP method")
	body := flag.String("body", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}`, "request body (empty: none)")
	timeout := flag.Duration("timeout", time.Minute, "bound on each round")
	caFile := flag.String("ca", "", "PEM file of the CA to trust for an https URL (the mock's, made at run time)")
	h2 := flag.Bool("h2", false, "offer HTTP/2 to an https URL; by default HTTP/1.1, as most SDKs speak")
	flag.Parse()
	if *url == "" || *n < 1 || *rounds < 1 || *warmup < 0 {
		flag.Usage()
		os.Exit(2)
	}

	tr := &http.Transport{
		Proxy:               nil, // loopback only: never an environment proxy
		MaxIdleConnsPerHost: *n,
		DisableCompression:  true,
		Protocols:           new(http.Protocols),
	}
	tr.Protocols.SetHTTP1(true)
	tr.Protocols.SetHTTP2(*h2)
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ttfb:", err)
			os.Exit(2)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "ttfb: %s holds no PEM certificate\n", *caFile)
			os.Exit(2)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	client := &http.Client{Transport: tr}
	var all []sample
	for r := 0; r < *warmup+*rounds; r++ {
		res := round(client, *url, *method, *body, *n, *timeout)
		if r < *warmup {
			continue
		}
		t, e, errs := split(res)
		fmt.Fprintf(os.Stderr, "ttfb round %d: n=%d errors=%d ttfb p50=%.3fms p99=%.3fms first event p50=%.3fms p99=%.3fms\n",
			r-*warmup+1, len(res), errs, ms(pct(t, 50)), ms(pct(t, 99)), ms(pct(e, 50)), ms(pct(e, 99)))
		all = append(all, res...)
	}
	t, e, errs := split(all)
	for _, s := range all {
		if s.err != nil {
			fmt.Fprintln(os.Stderr, "ttfb: first error:", s.err)
			break
		}
	}
	fmt.Printf("requests=%d errors=%d ttfb_p50_ms=%.3f ttfb_p99_ms=%.3f event_p50_ms=%.3f event_p99_ms=%.3f ttfb_max_ms=%.3f\n",
		len(all), errs, ms(pct(t, 50)), ms(pct(t, 99)), ms(pct(e, 50)), ms(pct(e, 99)), ms(pct(t, 100)))
	if errs == len(all) {
		os.Exit(1)
	}
}

// round starts n requests together and waits for every stream to end.
func round(client *http.Client, url, method, body string, n int, timeout time.Duration) []sample {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := make([]sample, n)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out[i] = one(ctx, client, url, method, body)
		}()
	}
	close(gate)
	wg.Wait()
	return out
}

func one(ctx context.Context, client *http.Client, url, method, body string) sample {
	var s sample
	var start time.Time
	trace := &httptrace.ClientTrace{
		GotFirstResponseByte: func() { s.ttfb = time.Since(start) },
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, rd)
	if err != nil {
		return sample{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer sk-loadtest-client")
	start = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return sample{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return sample{err: fmt.Errorf("HTTP %d", resp.StatusCode)}
	}
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 && s.event == 0 {
			s.event = time.Since(start)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sample{err: err}
		}
	}
	if s.event == 0 {
		return sample{err: errors.New("empty stream")}
	}
	return s
}

// split returns the sorted delays of the successful samples and the number
// of failed ones.
func split(ss []sample) (ttfb, event []time.Duration, errs int) {
	for _, s := range ss {
		if s.err != nil {
			errs++
			continue
		}
		ttfb = append(ttfb, s.ttfb)
		event = append(event, s.event)
	}
	slices.Sort(ttfb)
	slices.Sort(event)
	return ttfb, event, errs
}

// pct is the nearest-rank percentile p (0 < p ≤ 100) of sorted d.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	k := int(float64(len(d))*p/100+0.999999) - 1
	return d[min(max(k, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
