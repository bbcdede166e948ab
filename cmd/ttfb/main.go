// Command ttfb is a measurement probe for the load test
// (scripts/loadtest.sh): it opens -n streaming requests at the same moment,
// -rounds times, and prints the percentiles of three delays per request,
// each from sending the request:
//
//   - ttfb: to the first byte of the response (httptrace
//     GotFirstResponseByte, i.e. the status line);
//   - first event: to the first byte of the response body;
//   - first token: to the end of the first SSE event that carries content,
//     the blank line that closes it read (see hasContent for what counts:
//     OpenAI chat deltas with content, reasoning or tool calls, legacy
//     completions' text, Anthropic content_block_delta, Responses ".delta"
//     events, Gemini parts with text or a function call; not a role-only
//     first chunk, an error event or "[DONE]").
//
// The first token is the figure to compare across a proxy that holds a
// stream until its first output (gpt-load's commit window) and one that
// does not: through the first, the first byte is the first token; through
// the second, it may be a role-only chunk sent earlier.
//
// It sends a fixed number of requests and reads every stream to its end; it
// is not a load generator (wrk is used for load).
//
// The last line on stdout is machine-readable:
//
//	requests=750 errors=0 ttfb_p50_ms=1.234 ttfb_p99_ms=5.678 event_p50_ms=… event_p99_ms=… ttfb_max_ms=… token_p50_ms=… token_p99_ms=… no_token=0
//
// errors counts requests that failed (no answer, a status other than 200,
// a read error, an empty body); they are in none of the figures. no_token
// counts the streams that ended without a content event: they are in the
// ttfb and first-event figures but not in the token ones, whose
// percentiles are over the streams that had a token (0 when none had).
package main

import (
	"bufio"
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
	ttfb, event, token time.Duration // token 0: the stream carried no content
	err                error
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
		t, e, k, errs, noTok := split(res)
		fmt.Fprintf(os.Stderr, "ttfb round %d: n=%d errors=%d ttfb p50=%.3fms p99=%.3fms first event p50=%.3fms p99=%.3fms first token p50=%.3fms p99=%.3fms (%d without a token)\n",
			r-*warmup+1, len(res), errs, ms(pct(t, 50)), ms(pct(t, 99)), ms(pct(e, 50)), ms(pct(e, 99)), ms(pct(k, 50)), ms(pct(k, 99)), noTok)
		all = append(all, res...)
	}
	t, e, k, errs, noTok := split(all)
	for _, s := range all {
		if s.err != nil {
			fmt.Fprintln(os.Stderr, "ttfb: first error:", s.err)
			break
		}
	}
	if noTok > 0 {
		fmt.Fprintf(os.Stderr, "ttfb: %d of %d streams ended without an event that carries content\n", noTok, len(all)-errs)
	}
	fmt.Printf("requests=%d errors=%d ttfb_p50_ms=%.3f ttfb_p99_ms=%.3f event_p50_ms=%.3f event_p99_ms=%.3f ttfb_max_ms=%.3f token_p50_ms=%.3f token_p99_ms=%.3f no_token=%d\n",
		len(all), errs, ms(pct(t, 50)), ms(pct(t, 99)), ms(pct(e, 50)), ms(pct(e, 99)), ms(pct(t, 100)), ms(pct(k, 50)), ms(pct(k, 99)), noTok)
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
	br := bufio.NewReaderSize(&firstByte{r: resp.Body, start: start, at: &s.event}, 4096)
	var end time.Duration
	k, err := firstContent(br, func() { end = time.Since(start) })
	if k > 0 {
		s.token = end
	}
	if err == nil {
		_, err = io.Copy(io.Discard, br) // the rest of the stream
	}
	if err != nil {
		return sample{err: err}
	}
	if s.event == 0 {
		return sample{err: errors.New("empty stream")}
	}
	return s
}

// firstByte is the response body, noting when its first byte came.
type firstByte struct {
	r     io.Reader
	start time.Time
	at    *time.Duration
}

func (f *firstByte) Read(p []byte) (int, error) {
	k, err := f.r.Read(p)
	if k > 0 && *f.at == 0 {
		*f.at = time.Since(f.start)
	}
	return k, err
}

// split returns the sorted delays of the successful samples (token: of
// those that carried content), the number of failed ones and the number of
// successful ones without content.
func split(ss []sample) (ttfb, event, token []time.Duration, errs, noToken int) {
	for _, s := range ss {
		if s.err != nil {
			errs++
			continue
		}
		ttfb = append(ttfb, s.ttfb)
		event = append(event, s.event)
		if s.token > 0 {
			token = append(token, s.token)
		} else {
			noToken++
		}
	}
	slices.Sort(ttfb)
	slices.Sort(event)
	slices.Sort(token)
	return ttfb, event, token, errs, noToken
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
