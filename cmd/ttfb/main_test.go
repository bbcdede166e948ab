package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const (
	roleChunk    = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`
	contentChunk = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`
	stopChunk    = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`
	done         = "data: [DONE]"
)

// TestFirstContent: the number of the first event that carries content,
// and that the reading stops right after that event's blank line (rest is
// what is left to read).
func TestFirstContent(t *testing.T) {
	long := strings.Repeat("x", 10000)
	cases := []struct {
		name       string
		head, rest string // the stream is head+rest; firstContent reads head
		want       int
	}{
		{"the mock's shape: content first", contentChunk + "\n\n", stopChunk + "\n\n" + done + "\n\n", 1},
		{"role-only first event, then content", roleChunk + "\n\n" + contentChunk + "\n\n", done + "\n\n", 2},
		{"finish chunk and [DONE] carry none", stopChunk + "\n\n" + done + "\n\n", "", 0},
		{"[DONE] alone", done + "\n\n", "", 0},
		{"CRLF line ends", roleChunk + "\r\n\r\n" + contentChunk + "\r\n\r\n", done + "\r\n\r\n", 2},
		{"LF and CRLF mixed", roleChunk + "\r\n\n" + contentChunk + "\n\r\n", "", 2},
		{"data split over several lines", "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"hi\"}}]}\n\n", done + "\n\n", 1},
		{"data with no space after the colon", `data:{"choices":[{"delta":{"content":"x"}}]}` + "\n\n", "", 1},
		{"comments, event, id and retry lines", ": keepalive\n\nretry: 1000\n\nevent: chunk\nid: 7\n: a comment\n" + contentChunk + "\n\n", "", 1},
		{"a leading BOM", "\ufeff" + roleChunk + "\n\n" + contentChunk + "\n\n", "", 2},
		{"a line longer than the read buffer", `data: {"choices":[{"delta":{"content":"` + long + `"}}]}` + "\n\n", done + "\n\n", 1},
		{"a long role chunk first", `data: {"pad":"` + long + `","choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n" + contentChunk + "\n\n", "", 2},
		{"OpenAI error event", `data: {"error":{"message":"overloaded","type":"server_error","code":"server_is_overloaded"}}` + "\n\n", "", 0},
		{"error event, then content", `data: {"error":{"message":"x","type":"server_error"}}` + "\n\n" + contentChunk + "\n\n", "", 2},
		{"Anthropic error event", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", "", 0},
		{"Anthropic messages", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", 4},
		{"legacy completions text", `data: {"choices":[{"text":"","index":0}]}` + "\n\n" + `data: {"choices":[{"text":"Hello","index":0}]}` + "\n\n", "", 2},
		{"tool calls", roleChunk + "\n\n" + `data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}` + "\n\n", "", 2},
		{"empty tool calls and null content", `data: {"choices":[{"delta":{"role":"assistant","content":null,"tool_calls":[]}}]}` + "\n\n" + contentChunk + "\n\n", "", 2},
		{"reasoning_content", roleChunk + "\n\n" + `data: {"choices":[{"delta":{"reasoning_content":"Let me think"}}]}` + "\n\n", contentChunk + "\n\n", 2},
		{"usage-only chunk", `data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}` + "\n\n", "", 0},
		{"Responses API", "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n", "", 2},
		{"Gemini", `data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"}}]}` + "\r\n\r\n" +
			`data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}` + "\r\n\r\n", "", 2},
		{"not JSON", "data: hello\n\n", "", 0},
		{"content event cut off by the end of the stream", roleChunk + "\n\n" + contentChunk + "\n", "", 0},
		{"content event with no line end at all", contentChunk, "", 0},
		{"empty stream", "", "", 0},
	}
	readers := []struct {
		name string
		r    func(string) *bufio.Reader
	}{
		{"whole", func(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }},
		{"byte by byte", func(s string) *bufio.Reader {
			return bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(s)), 16)
		}},
	}
	for _, c := range cases {
		for _, rd := range readers {
			t.Run(c.name+"/"+rd.name, func(t *testing.T) {
				br := rd.r(c.head + c.rest)
				ends := 0
				n, err := firstContent(br, func() { ends++ })
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if n != c.want {
					t.Errorf("first content event %d, want %d", n, c.want)
				}
				if n > 0 && ends != n {
					t.Errorf("told of %d event ends before the content event %d", ends, n)
				}
				rest, err := io.ReadAll(br)
				if err != nil {
					t.Fatal(err)
				}
				if string(rest) != c.rest {
					t.Errorf("left to read %q, want %q", rest, c.rest)
				}
			})
		}
	}
}

func TestFirstContentReadError(t *testing.T) {
	boom := errors.New("connection reset")
	br := bufio.NewReader(io.MultiReader(strings.NewReader(roleChunk+"\n\n"+"data: {\"cho"), iotest.ErrReader(boom)))
	if n, err := firstContent(br, nil); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("got %d, %v; want 0, %v", n, err, boom)
	}
}

// TestSplit: a stream without a token is in the ttfb and first-event
// figures and counted apart; a failed request is in none.
func TestSplit(t *testing.T) {
	ms := time.Millisecond
	ttfb, event, token, errs, noTok := split([]sample{
		{ttfb: 2 * ms, event: 3 * ms, token: 4 * ms},
		{ttfb: 1 * ms, event: 2 * ms},
		{err: errors.New("HTTP 502")},
	})
	if len(ttfb) != 2 || len(event) != 2 || len(token) != 1 || errs != 1 || noTok != 1 {
		t.Fatalf("split: %v %v %v errors %d no token %d", ttfb, event, token, errs, noTok)
	}
	if ttfb[0] != ms || token[0] != 4*ms {
		t.Errorf("not sorted, or the wrong samples: %v %v", ttfb, token)
	}
}
