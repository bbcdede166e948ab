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

// TestLongLine: a line longer than MaxHeld passes unparsed, in any number
// of reads: its event is not dispatched, the parser holds no more than
// MaxHeld of it, and the events around it are parsed as ever.
func TestLongLine(t *testing.T) {
	for _, tc := range []struct {
		name, before, after string
		comments            int
	}{
		{"data line", "data: ", "\n\n", 0},
		{"comment line", ": ", "\n", 1},
		{"data over several lines", "data: ", "\ndata: more\n\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			long := strings.Repeat("x", 1<<20)
			chunks := []string{"data: first\n\n" + tc.before}
			for i := 0; i < len(long); i += 4096 {
				chunks = append(chunks, long[i:i+4096])
			}
			chunks = append(chunks, tc.after+"data: last\n\n")
			var p Parser
			var got []ev
			held := 0
			for _, c := range chunks {
				p.Feed([]byte(c), func(e Event) { got = append(got, ev{string(e.Type), string(e.Data), string(e.ID)}) })
				held = max(held, cap(p.line)+cap(p.data)+cap(p.typ)+cap(p.id))
			}
			if want := []ev{{"", "first", ""}, {"", "last", ""}}; !reflect.DeepEqual(got, want) {
				t.Errorf("events = %v; want %v (the long event skipped)", got, want)
			}
			if held > DefaultMaxHeld+64 {
				t.Errorf("parser held %d bytes at most; want at most %d", held, DefaultMaxHeld)
			}
			if p.Comments != tc.comments || p.Pending() {
				t.Errorf("Comments = %d, Pending() = %v; want %d, false", p.Comments, p.Pending(), tc.comments)
			}
		})
	}
	// Data that grows past MaxHeld over many short lines spoils its event
	// alike.
	var p Parser
	var n int
	p.Feed([]byte(strings.Repeat("data: "+strings.Repeat("y", 1000)+"\n", 100)+"\ndata: ok\n\n"), func(e Event) {
		if string(e.Data) != "ok" {
			t.Errorf("event of %d bytes dispatched; want only the short one after it", len(e.Data))
		}
		n++
	})
	if n != 1 || cap(p.data) > DefaultMaxHeld {
		t.Errorf("%d events, data capacity %d; want 1 and at most %d", n, cap(p.data), DefaultMaxHeld)
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
// A line longer than limit (its BOM counted) is skipped, and spoils its
// event unless it is a comment; so does data growing past limit.
func reference(s string, limit int) (out []ev, comments int) {
	first := len(s)
	s = strings.TrimPrefix(s, "\uFEFF")
	bomLen := first - len(s)
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	lines = lines[:len(lines)-1] // the last piece has no line end yet
	var typ, id string
	var data []string
	size, spoiled := 0, false
	for i, l := range lines {
		n := len(l)
		if i == 0 {
			n += bomLen
		}
		switch {
		case n > limit && strings.HasPrefix(l, ":"):
			comments++
			continue
		case n > limit:
			spoiled, data, size = true, nil, 0
			continue
		case l == "":
			if data != nil && !spoiled {
				out = append(out, ev{typ, strings.Join(data, "\n"), id})
			}
			typ, data, size, spoiled = "", nil, 0, false
			continue
		case strings.HasPrefix(l, ":"):
			comments++
			continue
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			need := len(value)
			if data != nil {
				need++
			}
			if spoiled || size+need > limit {
				spoiled, data, size = true, nil, 0
				break
			}
			data = append(data, value)
			size += need
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	return out, comments
}

func TestReferenceAgrees(t *testing.T) {
	for _, tc := range cases {
		if got, _ := reference(tc.in, DefaultMaxHeld); !reflect.DeepEqual(got, tc.want) {
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
	f.Add([]byte("data: 0123456789abcdef\n\n: 0123456789abcdef\ndata: ok\n\n"), uint64(5))
	f.Add([]byte("\uFEFF: 0123456789abcdef\ndata: a\ndata: bcdefghijklmn\n\ndata: c\n\n"), uint64(9))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		// The default limit, and one small enough for short inputs to
		// meet it.
		for _, limit := range []int{0, 12} {
			parse := func(chunks ...string) ([]ev, *Parser) {
				p := &Parser{MaxHeld: limit}
				var out []ev
				for _, c := range chunks {
					p.Feed([]byte(c), func(e Event) { out = append(out, ev{string(e.Type), string(e.Data), string(e.ID)}) })
				}
				return out, p
			}
			whole, p := parse(string(in))
			want, comments := reference(string(in), p.max())
			if !reflect.DeepEqual(whole, want) || p.Comments != comments {
				t.Fatalf("MaxHeld %d: Feed(%q) = %v, %d comments; reference says %v, %d", limit, in, whole, p.Comments, want, comments)
			}
			r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			var chunks []string
			for rest := string(in); len(rest) > 0; {
				n := 1 + r.IntN(len(rest))
				chunks = append(chunks, rest[:n])
				rest = rest[n:]
			}
			split, q := parse(chunks...)
			if !reflect.DeepEqual(split, whole) {
				t.Fatalf("MaxHeld %d: Feed(%q) in reads %q = %v; whole gives %v", limit, in, chunks, split, whole)
			}
			if p.Pending() != q.Pending() || p.Comments != q.Comments {
				t.Fatalf("MaxHeld %d: state after %q differs when split as %q", limit, in, chunks)
			}
			if held := cap(q.line) + cap(q.data); held > 2*q.max() {
				t.Fatalf("MaxHeld %d: parser holds %d bytes after %q", limit, held, in)
			}
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
