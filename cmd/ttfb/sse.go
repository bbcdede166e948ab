package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// firstContent reads server-sent events from r up to the end of the first
// event that carries content (see hasContent) and returns its number, 1
// for the first event of the stream; 0 when r ended without one. It stops
// right after that event's blank line, so the caller can take the time
// there and read the rest of the stream itself. err is a read error other
// than io.EOF. ended, if not nil, is called at the end of every event with
// data, before the data is decoded: a time taken there is when the event
// arrived, without the probe's own JSON decoding in it.
//
// The parsing follows the SSE format: lines end in LF or CRLF (a lone CR
// is not a line end here), an event ends at a blank line, its data is its
// "data:" lines (one space after the colon dropped) joined by "\n", lines
// starting with ":" are comments, a leading UTF-8 BOM is skipped, and an
// event cut off by the end of the stream, with no blank line, is not an
// event. It is the probe's own, not the proxy's (internal/sse), so that a
// fault in the proxy's parsing cannot hide in the measurement.
func firstContent(r *bufio.Reader, ended func()) (int, error) {
	var (
		data    []byte // the event's data lines, joined
		hasData bool
		n       int
		line    []byte
		err     error
	)
	first := true
	for {
		line, err = readLine(r, line[:0])
		if err != nil {
			// A last line with no line end: an event cut off, not one.
			if errors.Is(err, io.EOF) {
				return 0, nil
			}
			return 0, err
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if first {
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
			first = false
		}
		switch {
		case len(line) == 0:
			if hasData {
				n++
				if ended != nil {
					ended()
				}
				if hasContent(data) {
					return n, nil
				}
			}
			data, hasData = data[:0], false
		case line[0] == ':':
			// a comment
		default:
			name, value, found := bytes.Cut(line, []byte(":"))
			if string(name) != "data" {
				continue // event:, id:, retry: and unknown fields
			}
			if found {
				value = bytes.TrimPrefix(value, []byte(" "))
			}
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		}
	}
}

// readLine appends one line of r to buf, its "\n" included, however long
// it is.
func readLine(r *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		b, err := r.ReadSlice('\n')
		buf = append(buf, b...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
	}
}

// eventData is what hasContent looks at in an event's JSON data.
type eventData struct {
	Type    string `json:"type"`
	Choices []struct {
		Text  json.RawMessage            `json:"text"`
		Delta map[string]json.RawMessage `json:"delta"`
	} `json:"choices"`
	Candidates []struct {
		Content struct {
			Parts []map[string]json.RawMessage `json:"parts"`
		} `json:"content"`
	} `json:"candidates"`
}

// The members of an OpenAI chat delta that carry generated output; the
// role chunk that opens a stream has a role and an empty content.
var deltaOutput = []string{"content", "reasoning_content", "reasoning", "refusal", "tool_calls", "function_call", "audio"}

// hasContent reports whether an event's data carries generated output:
//
//   - OpenAI chat completions: a choice whose delta has a non-empty
//     content, reasoning_content, reasoning, refusal, tool_calls,
//     function_call or audio (not the role-only first chunk);
//   - OpenAI legacy completions: a choice with a non-empty text;
//   - Anthropic messages: a content_block_delta event;
//   - OpenAI Responses: an event whose type ends in ".delta";
//   - Gemini (alt=sse): a candidate part with a non-empty text or a
//     functionCall.
//
// Anything else carries none: "[DONE]", data that is not JSON, error
// events, message_start, ping, usage-only and finish_reason-only chunks.
func hasContent(data []byte) bool {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return false
	}
	var d eventData
	_ = json.Unmarshal(data, &d) // a member of another shape: the rest still decodes
	if d.Type == "content_block_delta" || strings.HasSuffix(d.Type, ".delta") {
		return true
	}
	for _, c := range d.Choices {
		if nonEmpty(c.Text) {
			return true
		}
		for _, k := range deltaOutput {
			if nonEmpty(c.Delta[k]) {
				return true
			}
		}
	}
	for _, c := range d.Candidates {
		for _, p := range c.Content.Parts {
			if nonEmpty(p["text"]) || nonEmpty(p["functionCall"]) {
				return true
			}
		}
	}
	return false
}

// nonEmpty: a JSON value present and not null, "", [] or {}.
func nonEmpty(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	switch string(v) {
	case "", "null", `""`, "[]", "{}":
		return false
	}
	if v[0] == '[' || v[0] == '{' {
		inner := bytes.TrimSpace(v[1 : len(v)-1])
		return len(inner) > 0
	}
	return true
}
