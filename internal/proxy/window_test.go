package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// Event streams as providers send them. The error events keep the shape
// each provider documents or was seen sending (field order and spacing
// included); the messages are shortened.
const (
	anthropicStart = "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}` + "\n\n" +
		"event: content_block_start\n" +
		`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n"
	anthropicText = "event: content_block_delta\n" +
		`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}` + "\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	openaiRole  = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	openaiToken = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	openaiDone  = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	geminiText      = `data: {"candidates": [{"content": {"parts": [{"text": "Hello"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"totalTokenCount": 5},"modelVersion": "gemini-2.5-flash"}` + "\r\n\r\n"
	responsesCreate = "event: response.created\n" +
		`data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","error":null,"output":[]}}` + "\n\n"
)

// goodStream is what the second attempt answers in the failover tests.
const goodStream = openaiRole + openaiToken + openaiDone

// writeEvents sends each part and flushes it, as a provider streams.
func writeEvents(w http.ResponseWriter, parts ...string) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	rc := http.NewResponseController(w)
	for _, p := range parts {
		io.WriteString(w, p)
		rc.Flush()
	}
}

func TestWindowFailsOverOnErrorEvent(t *testing.T) {
	tests := []struct {
		name   string
		first  []string // the failing attempt's stream
		reason string   // the failover's metric label
	}{
		{"anthropic overloaded after message_start", []string{anthropicStart,
			"event: error\ndata: {\"type\": \"error\", \"error\": {\"details\": null, \"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n"},
			"target_error"},
		{"anthropic rate limit", []string{anthropicStart,
			"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}\n\n"},
			"key_rate_limited"},
		{"anthropic api_error", []string{anthropicStart,
			"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\n"},
			"target_error"},
		{"openai server_is_overloaded after the role chunk", []string{openaiRole,
			`data: {"error":{"message":"The server is overloaded or not ready yet.","type":"server_error","param":null,"code":"server_is_overloaded"}}` + "\n\n"},
			"target_error"},
		{"openai server_error without a code", []string{openaiRole,
			`data: {"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}` + "\n\n"},
			"target_error"},
		{"openai rate_limit_exceeded", []string{
			`data: {"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM).","type":"tokens","param":null,"code":"rate_limit_exceeded"}}` + "\n\n"},
			"key_rate_limited"},
		{"openai insufficient_quota", []string{openaiRole,
			`data: {"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}` + "\n\n"},
			"key_permanent"},
		{"openai-compatible error chunk with finish_reason error", []string{openaiRole,
			`data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-4o","provider":"OpenAI","error":{"code":"server_error","message":"Provider disconnected"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}` + "\n\n"},
			"target_error"},
		{"gemini unavailable", []string{
			`data: {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}` + "\r\n\r\n"},
			"target_error"},
		{"gemini resource exhausted", []string{
			`data: {"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}` + "\r\n\r\n"},
			"key_rate_limited"},
		{"responses api error event", []string{responsesCreate,
			"event: error\n" + `data: {"type":"error","code":"server_error","message":"An error occurred while processing your request.","param":null,"sequence_number":1}` + "\n\n"},
			"target_error"},
		{"responses api response.failed", []string{responsesCreate,
			"event: response.failed\n" + `data: {"type":"response.failed","sequence_number":1,"response":{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"output":[]}}` + "\n\n"},
			"target_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					writeEvents(w, tc.first...)
					return
				}
				writeEvents(w, goodStream)
			})
			e := start(t, testKeys, []string{up.URL}, nil)
			resp, body := post(t, e.URL+"/v1/chat/completions", `{"stream":true}`)
			if resp.StatusCode != http.StatusOK || body != goodStream {
				t.Fatalf("client got %d %q; want 200 and the second attempt's stream alone", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Gpt-Load-Attempts"); got != "2" {
				t.Errorf("X-Gpt-Load-Attempts = %q; want 2", got)
			}
			reqs := up.Requests()
			if len(reqs) != 2 || reqs[0].Key == reqs[1].Key {
				t.Fatalf("upstream saw %d requests; want 2 with different keys", len(reqs))
			}
			if got := metric(t, e, `gpt_load_stream_failovers_total{reason="`+tc.reason+`"}`); got != 1 {
				t.Errorf("failovers{reason=%q} = %v; want 1", tc.reason, got)
			}
		})
	}
}

// TestWindowErrorNotRetried: an error the client caused, or the last
// attempt's error, reaches the client as the provider streamed it.
func TestWindowErrorNotRetried(t *testing.T) {
	clientErr := anthropicStart + "event: error\n" +
		`data: {"type":"error","error":{"type":"invalid_request_error","message":"messages: text content blocks must be non-empty"}}` + "\n\n"
	overloaded := anthropicStart + "event: error\n" +
		`data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` + "\n\n"
	for _, tc := range []struct {
		name     string
		stream   string
		retries  string
		attempts int
	}{
		{"client error", clientErr, "3", 1},
		{"attempts run out", overloaded, "1", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) { writeEvents(w, tc.stream) })
			e := start(t, testKeys, []string{up.URL}, map[string]string{"MAX_RETRIES": tc.retries})
			resp, body := post(t, e.URL+"/v1/messages", `{"stream":true}`)
			if resp.StatusCode != http.StatusOK || body != tc.stream {
				t.Errorf("client got %d %q; want 200 and the stream as sent", resp.StatusCode, body)
			}
			if up.Count() != tc.attempts {
				t.Errorf("upstream saw %d attempts; want %d", up.Count(), tc.attempts)
			}
		})
	}
}

// TestErrorStreamTail: a stream whose error event is the final answer is
// passed on as it goes on after that event: here OpenAI's shape, an error
// chunk and, once the client has it, the closing [DONE].
func TestErrorStreamTail(t *testing.T) {
	errEvent := `data: {"error":{"message":"The model produced invalid content.","type":"invalid_request_error","param":null,"code":null}}` + "\n\n"
	tail := "data: [DONE]\n\n"
	seen := make(chan struct{})
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, errEvent)
		select {
		case <-seen: // the client has the error: the rest comes in a read of its own
		case <-r.Context().Done():
			return
		}
		writeEvents(w, tail)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n')
	blank, _ := br.ReadString('\n')
	if first+blank != errEvent {
		t.Fatalf("first event %q; want the error event", first+blank)
	}
	close(seen)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != tail {
		t.Errorf("after the error event the client got %q, %v; want %q", rest, err, tail)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d attempts; want 1 (a client error is not retried)", up.Count())
	}
}

// TestWindowAddsNoDelayToFirstToken: the first token reaches the client
// while the upstream waits for the client to confirm it, so the test hangs
// (until its deadline) if the window held the token back.
func TestWindowAddsNoDelayToFirstToken(t *testing.T) {
	for _, tc := range []struct{ name, preamble, token, rest string }{
		{"openai", openaiRole, openaiToken, openaiDone},
		{"anthropic", anthropicStart, anthropicText, ""},
		{"gemini", "", geminiText, ""},
		{"responses api", responsesCreate, "event: response.output_text.delta\n" +
			`data: {"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello"}` + "\n\n",
			"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan struct{})
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				writeEvents(w, tc.preamble, tc.token)
				select {
				case <-got:
				case <-time.After(5 * time.Second):
					t.Error("the client did not get the first token while the upstream held the stream open")
					return
				}
				writeEvents(w, tc.rest)
			})
			e := start(t, testKeys, []string{up.URL}, nil)
			resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, len(tc.preamble)+len(tc.token))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("reading the first token: %v", err)
			}
			close(got)
			rest, _ := io.ReadAll(resp.Body)
			if all := string(first) + string(rest); all != tc.preamble+tc.token+tc.rest {
				t.Errorf("client got %q; want the stream byte for byte", all)
			}
			if got := metric(t, e, "gpt_load_stream_first_token_seconds_count"); got != 1 {
				t.Errorf("first token observations = %v; want 1", got)
			}
			if got := metric(t, e, "gpt_load_stream_first_byte_seconds_count"); got != 1 {
				t.Errorf("first byte observations = %v; want 1", got)
			}
		})
	}
}

// TestWindowBounds: without output, the window ends after 16 KiB or its
// time, and what it held goes out; an error after that is the client's to
// see, never retried.
func TestWindowBounds(t *testing.T) {
	late := `data: {"error":{"message":"late","type":"server_error","code":"server_is_overloaded"}}` + "\n\n"
	for _, tc := range []struct {
		name     string
		preamble string
		vars     map[string]string
	}{
		{"size", strings.Repeat(openaiRole, 17<<10/len(openaiRole)+1), nil},
		{"time", openaiRole, map[string]string{"STREAM_WINDOW_MS": "200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan struct{})
			up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
				writeEvents(w, tc.preamble)
				select {
				case <-got:
				case <-time.After(5 * time.Second):
					t.Error("the window did not end while the upstream was silent")
					return
				}
				writeEvents(w, late)
			})
			e := start(t, testKeys, []string{up.URL}, tc.vars)
			resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			held := make([]byte, len(tc.preamble))
			if _, err := io.ReadFull(resp.Body, held); err != nil {
				t.Fatalf("reading what the window held: %v", err)
			}
			close(got)
			rest, _ := io.ReadAll(resp.Body)
			if string(held) != tc.preamble || string(rest) != late {
				t.Errorf("client got %d bytes then %q; want the preamble then the late error", len(held), rest)
			}
			if up.Count() != 1 {
				t.Errorf("upstream saw %d attempts; want 1 (committed streams are never retried)", up.Count())
			}
		})
	}
}

// TestWindowBreakOffRetried: an upstream that drops the connection before
// any output is retried; the client sees the second stream alone.
func TestWindowBreakOffRetried(t *testing.T) {
	var n atomic.Int32
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			writeEvents(w, anthropicStart)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		writeEvents(w, goodStream)
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, body := post(t, e.URL+"/v1/chat/completions", `{"stream":true}`)
	if resp.StatusCode != http.StatusOK || body != goodStream {
		t.Fatalf("client got %d %q; want 200 and the second stream alone", resp.StatusCode, body)
	}
	if got := metric(t, e, `gpt_load_stream_failovers_total{reason="stream_reset"}`); got != 1 {
		t.Errorf(`failovers{reason="stream_reset"} = %v; want 1`, got)
	}
}

// TestStreamIdleTimeout: a committed stream silent for STREAM_IDLE_TIMEOUT
// is cut, so the client's read fails instead of ending cleanly; the
// upstream request is cancelled and the access line says why.
func TestStreamIdleTimeout(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, openaiRole, openaiToken)
		<-r.Context().Done()
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_IDLE_TIMEOUT": "1"})
	// A deadline, so that a stream never cut fails the test instead of
	// hanging it: 60 s only a stream that is never cut reaches, whatever
	// the machine's load.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	begin := time.Now()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("stream ended cleanly after %v with %q; want an error (no final chunk)", time.Since(begin), body)
	}
	if string(body) != openaiRole+openaiToken {
		t.Errorf("client got %q before the cut; want the events sent", body)
	}
	if ctx.Err() != nil {
		t.Fatal("stream not cut within 60 s: STREAM_IDLE_TIMEOUT=1 did not fire")
	}
	// Not before the idle timeout (a load can only make it later).
	if d := time.Since(begin); d < 900*time.Millisecond {
		t.Errorf("cut after %v; want after STREAM_IDLE_TIMEOUT (1 s)", d)
	}
	select {
	case <-up.Requests()[0].Cancelled:
	case <-time.After(30 * time.Second): // a hang bound
		t.Error("upstream request not cancelled after the idle timeout")
	}
	e.Logs.WaitFor(t, `"error":"stream idle timeout"`, 10*time.Second)
	if !strings.Contains(e.Logs.String(), `"level":"error"`) {
		t.Errorf("access line for the cut stream not at error level:\n%s", e.Logs.String())
	}
}

// TestStreamIdleInWindow: silence before any output is a timeout after the
// request was sent: 504, not retried (the upstream may still be running it).
func TestStreamIdleInWindow(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, anthropicStart)
		<-r.Context().Done()
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_IDLE_TIMEOUT": "1"})
	resp, body := post(t, e.URL+"/v1/messages", `{"stream":true}`)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "upstream_timeout") {
		t.Errorf("client got %d %s; want 504 upstream_timeout", resp.StatusCode, body)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d attempts; want 1", up.Count())
	}
}

// TestStreamIdleOff: STREAM_IDLE_TIMEOUT=0 never cuts.
func TestStreamIdleOff(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, openaiRole, openaiToken)
		time.Sleep(1200 * time.Millisecond) // the silence under test
		writeEvents(w, openaiDone)
	})
	e := start(t, testKeys, []string{up.URL}, map[string]string{"STREAM_IDLE_TIMEOUT": "0"})
	if resp, body := post(t, e.URL+"/v1/chat/completions", `{"stream":true}`); resp.StatusCode != 200 || body != goodStream {
		t.Errorf("client got %d %q; want the whole stream", resp.StatusCode, body)
	}
}

// post sends body and reads the whole answer; a read error fails the test.
func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := client().Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, b)
	}
	return resp, string(b)
}

// metric reads one sample from /metrics; 0 when it is absent.
func metric(t *testing.T, e *env, name string) float64 {
	t.Helper()
	resp, err := client().Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte(name+" ")); ok {
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return 0
}

// TestStreamBrokenAfterCommit: an upstream that breaks off after the first
// token ends the client's stream without the final chunk, is not retried,
// and the access line says so.
func TestStreamBrokenAfterCommit(t *testing.T) {
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		writeEvents(w, openaiRole, openaiToken)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(body) != openaiRole+openaiToken {
		t.Errorf("client got %q, error %v; want the events sent, then an error", body, err)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d attempts; want 1", up.Count())
	}
	e.Logs.WaitFor(t, `"error":"upstream stream broken"`, 10*time.Second)
}

// TestWindowSkipsCompressedStreams: events of a compressed stream cannot be
// read, so it is never held: the role chunk alone reaches the client.
func TestWindowSkipsCompressedStreams(t *testing.T) {
	got := make(chan struct{})
	up := testupstream.New(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br")
		writeEvents(w, openaiRole)
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Error("a compressed stream was held")
		}
	})
	e := start(t, testKeys, []string{up.URL}, nil)
	resp, err := client().Post(e.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, len(openaiRole))
	if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != openaiRole {
		t.Errorf("client got %q, %v; want the first chunk at once", b, err)
	}
	close(got)
}
