package sse

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// ev is an Event with its slices copied, for comparing.
type ev struct{ Type, Data, ID string }

func (e ev) String() string { return fmt.Sprintf("{%q %q %q}", e.Type, e.Data, e.ID) }

// parseChunks feeds chunks one after another and returns every event.
func parseChunks(chunks ...string) ([]ev, *Parser) {
	var p Parser
	var out []ev
	for _, c := range chunks {
		p.Feed([]byte(c), func(e Event) { out = append(out, ev{string(e.Type), string(e.Data), string(e.ID)}) })
	}
	return out, &p
}

var cases = []struct {
	name string
	in   string
	want []ev
}{
	{"lf", "data: a\n\n", []ev{{"", "a", ""}}},
	{"crlf", "data: a\r\n\r\n", []ev{{"", "a", ""}}},
	{"cr", "data: a\r\r", []ev{{"", "a", ""}}},
	{"mixed ends", "data: a\rdata: b\r\ndata: c\n\r\n", []ev{{"", "a\nb\nc", ""}}},
	{"multi-line data", "data: one\ndata: two\ndata:\ndata: four\n\n", []ev{{"", "one\ntwo\n\nfour", ""}}},
	{"one space stripped", "data:  two spaces\ndata:none\n\n", []ev{{"", " two spaces\nnone", ""}}},
	{"event and id", "event: error\nid: 7\ndata: {\"x\":1}\n\ndata: next\n\n",
		[]ev{{"error", `{"x":1}`, "7"}, {"", "next", "7"}}},
	{"type resets, id stays", "event: a\ndata: 1\n\nid: 2\ndata: 2\n\nid\ndata: 3\n\n",
		[]ev{{"a", "1", ""}, {"", "2", "2"}, {"", "3", ""}}},
	{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []ev{{"", "a", "1"}, {"", "b", "1"}}},
	{"comments", ": keepalive\n\n:\ndata: x\n: inside\n\n", []ev{{"", "x", ""}}},
	{"no data, no event", "event: ping\n\nretry: 10\n\n\n\n", nil},
	{"field without colon", "data\ndata\n\n", []ev{{"", "\n", ""}}},
	{"unknown field", "foo: bar\ndata: x\n\n", []ev{{"", "x", ""}}},
	{"bom", "\xEF\xBB\xBFdata: a\n\n", []ev{{"", "a", ""}}},
	{"only the first bom", "data: a\n\n\xEF\xBB\xBFdata: b\n\n", []ev{{"", "a", ""}}},
	{"unterminated event dropped", "data: a\n\ndata: b\n", []ev{{"", "a", ""}}},
	{"colon in value", "data: a: b\n\n", []ev{{"", "a: b", ""}}},
}

func TestParse(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := parseChunks(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Feed(%q) = %v; want %v", tc.in, got, tc.want)
			}
			// The same bytes one at a time give the same events.
			bytewise := make([]string, len(tc.in))
			for i := 0; i < len(tc.in); i++ {
				bytewise[i] = tc.in[i : i+1]
			}
			if got, _ := parseChunks(bytewise...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Feed(%q) a byte at a time = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestCRAtReadBoundary: a CR ending one read and the LF starting the next
// are one line end, not two (which would end the event early).
func TestCRAtReadBoundary(t *testing.T) {
	got, _ := parseChunks("data: a\r", "\ndata: b\r", "\n\r", "\n")
	want := []ev{{"", "a\nb", ""}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v; want %v", got, want)
	}
}

func TestLongLine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	chunks := []string{"data: "}
	for i := 0; i < len(long); i += 4096 {
		chunks = append(chunks, long[i:i+4096])
	}
	chunks = append(chunks, "\n\n")
	got, _ := parseChunks(chunks...)
	if len(got) != 1 || got[0].Data != long {
		t.Fatalf("got %d events; want one with the 1 MiB line intact", len(got))
	}
}

func TestPending(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"data: a\n\n", false},
		{"data: a\n\n: c\n", false},
		{"data: a\r\n\r", false}, // the LF to come adds an empty line: harmless
		{"dat", true},
		{"data: a\n", true},
		{"event: x\n", true},
		{"id: 1\n", true},
		{"data: a\r", true},
		{":", true},
	} {
		if _, p := parseChunks(tc.in); p.Pending() != tc.want {
			t.Errorf("Pending() after %q = %v; want %v", tc.in, p.Pending(), tc.want)
		}
	}
}

// reference parses a whole stream the plain way: normalise line ends, split,
// then run the standard's steps line by line. It shares no code with Parser.
func reference(s string) []ev {
	s = strings.TrimPrefix(s, "\uFEFF")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	lines = lines[:len(lines)-1] // the last piece has no line end yet
	var out []ev
	var typ, id string
	var data []string
	for _, l := range lines {
		switch {
		case l == "":
			if data != nil {
				out = append(out, ev{typ, strings.Join(data, "\n"), id})
			}
			typ, data = "", nil
			continue
		case strings.HasPrefix(l, ":"):
			continue
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	return out
}

func TestReferenceAgrees(t *testing.T) {
	for _, tc := range cases {
		if got := reference(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("reference(%q) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzParser checks two oracles: the parser agrees with the reference on the
// whole input, and gives the same events when the input is cut into reads
// at arbitrary points (seeded from the input, so failures reproduce).
func FuzzParser(f *testing.F) {
	for _, tc := range cases {
		f.Add([]byte(tc.in), uint64(1))
	}
	f.Add([]byte("data: a\r\n\r\ndata: b\r\r"), uint64(7))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		whole, p := parseChunks(string(in))
		if want := reference(string(in)); !reflect.DeepEqual(whole, want) {
			t.Fatalf("Feed(%q) = %v; reference says %v", in, whole, want)
		}
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var chunks []string
		for rest := string(in); len(rest) > 0; {
			n := 1 + r.IntN(len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		split, q := parseChunks(chunks...)
		if !reflect.DeepEqual(split, whole) {
			t.Fatalf("Feed(%q) in reads %q = %v; whole gives %v", in, chunks, split, whole)
		}
		if p.Pending() != q.Pending() || p.Comments != q.Comments {
			t.Fatalf("state after %q differs when split as %q", in, chunks)
		}
	})
}

func BenchmarkFeed(b *testing.B) {
	chunk := []byte("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token \"}}]}\n\n")
	var p Parser
	n := 0
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		p.Feed(chunk, func(Event) { n++ })
	}
}
