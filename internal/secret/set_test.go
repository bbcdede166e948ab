package secret

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

var setKeys = []string{
	"sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
	"AIzaSyA1234567890abcdefghijklmnopqrstu",
	"shortkey1",
	"x.y:z",
	"1x.y", // overlaps shortkey1 and x.y:z
}

// setCases seed TestSetRedact and FuzzSetRedact.
var setCases = []struct{ name, in, want string }{
	{"empty", "", ""},
	{"no key", `{"error":{"message":"Rate limit reached"}}`, `{"error":{"message":"Rate limit reached"}}`},
	{"openai message", `{"error":{"message":"Incorrect API key provided: sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789."}}`,
		`{"error":{"message":"Incorrect API key provided: sk-pro…6789."}}`},
	{"two keys", "AIzaSyA1234567890abcdefghijklmnopqrstu and shortkey1", "AIzaSy…rstu and sh…1"},
	{"key with odd bytes", "k=x.y:z;", "k=x…z;"},
	{"key with odd bytes at the end of a sentence", "k=x.y:z.", "k=x…z."},
	{"key before a dot", "provided: shortkey1.", "provided: sh…1."},
	{"key glued to punctuation keys use", "a:shortkey1.y", "a:sh…1.y"},
	{"key glued to letters after it", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789X", "sk-pro…6789X"},
	{"key glued to letters before it", "Bearersk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "Bearersk-pro…6789"},
	{"gson escape", `provided: \u0027sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\u0027.`, `provided: \u0027sk-pro…6789\u0027.`},
	{"newline escape", `key:\nAIzaSyA1234567890abcdefghijklmnopqrstu\n`, `key:\nAIzaSy…rstu\n`},
	{"percent-encoded =", "?key%3DAIzaSyA1234567890abcdefghijklmnopqrstu%26alt", "?key%3DAIzaSy…rstu%26alt"},
	{"a key not in the pool", "sk-proj-ZZZZEfGhIjKlMnOpQrStUvWxYz0123456789", "sk-proj-ZZZZEfGhIjKlMnOpQrStUvWxYz0123456789"},
	{"key at both ends", "shortkey1 shortkey1", "sh…1 sh…1"},
	{"keys glued together", "shortkey1shortkey1", "sh…1sh…1"},
	{"keys overlapping", "shortkey1x.y:z", "sh…11…x…z"},
	{"key inside a key", "x.y:zzz1x.y:z", "x…zzz1…x…z"},
}

func TestSetRedact(t *testing.T) {
	s := NewSet(setKeys)
	for _, tc := range setCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(s.Redact([]byte(tc.in))); got != tc.want {
				t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
			}
			if got := s.RedactString(tc.in); got != tc.want {
				t.Errorf("RedactString(%q) = %q; want %q", tc.in, got, tc.want)
			}
			checkStream(t, s, []byte(tc.in))
		})
	}
}

func TestSetRedactNoKeyDoesNotAllocate(t *testing.T) {
	s := NewSet(setKeys)
	in := []byte(`{"error":{"message":"The model gpt-5 does not exist","type":"invalid_request_error"}}`)
	if n := testing.AllocsPerRun(100, func() { s.Redact(in) }); n != 0 {
		t.Errorf("Redact allocations = %v; want 0", n)
	}
	v := string(in)
	if n := testing.AllocsPerRun(100, func() { s.RedactString(v) }); n != 0 {
		t.Errorf("RedactString allocations = %v; want 0", n)
	}
}

func TestSetEmpty(t *testing.T) {
	for _, s := range []*Set{nil, NewSet(nil), NewSet([]string{""})} {
		in := []byte("sk-anything")
		if got := s.Redact(in); string(got) != "sk-anything" {
			t.Errorf("Redact(%q) on an empty set = %q", in, got)
		}
	}
	got, _ := io.ReadAll(NewSet(nil).RedactReader(io.NopCloser(strings.NewReader("abc"))))
	if string(got) != "abc" {
		t.Errorf("RedactReader on an empty set = %q; want abc", got)
	}
}

// bruteRedact is the oracle: every key of keys at every position, masked
// by the rule Redact documents (in order of end, longest first at one end;
// a key starting inside one masked already is masked in full after it).
func bruteRedact(keys []string, in []byte) []byte {
	type span struct{ start, end int }
	var spans []span
	for end := 1; end <= len(in); end++ {
		var at []span
		for _, k := range keys {
			if k != "" && len(k) <= end && string(in[end-len(k):end]) == k && !slices.Contains(at, span{end - len(k), end}) {
				at = append(at, span{end - len(k), end})
			}
		}
		slices.SortFunc(at, func(a, b span) int { return a.start - b.start })
		spans = append(spans, at...)
	}
	var out []byte
	last := 0
	for _, sp := range spans {
		if sp.end <= last {
			continue
		}
		if sp.start > last {
			out = append(out, in[last:sp.start]...)
		}
		out = AppendMask(out, string(in[sp.start:sp.end]))
		last = sp.end
	}
	return append(out, in[last:]...)
}

// checkStream is the oracle shared with FuzzSetRedact: Redact gives what
// the brute-force search gives, and reading through RedactReader, in reads
// of any size, gives exactly what Redact gives on the whole input.
func checkStream(t *testing.T, s *Set, in []byte) {
	t.Helper()
	want := s.Redact(in)
	if brute := bruteRedact(setKeys, in); !bytes.Equal(want, brute) {
		t.Fatalf("Redact(%q) = %q; want %q (brute force)", in, want, brute)
	}
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
		iotest.DataErrReader,
	} {
		got, err := io.ReadAll(s.RedactReader(io.NopCloser(wrap(bytes.NewReader(in)))))
		if err != nil {
			t.Fatalf("RedactReader(%q): %v", in, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("RedactReader(%q) = %q; want %q (as Redact)", in, got, want)
		}
	}
}

// TestRedactReaderLong: keys at every offset of a stream many read
// chunks long, read in pieces of every size, are all masked, and the
// reader holds back nothing past a byte no key holds.
func TestRedactReaderLong(t *testing.T) {
	s := NewSet(setKeys)
	var in bytes.Buffer
	for i := range 3000 {
		in.WriteString(strings.Repeat("q", i%97) + setKeys[i%len(setKeys)])
	}
	want := bruteRedact(setKeys, in.Bytes())
	if got := s.Redact(in.Bytes()); !bytes.Equal(got, want) {
		t.Fatalf("Redact over %d bytes differs from the brute force", in.Len())
	}
	got, err := io.ReadAll(s.RedactReader(io.NopCloser(iotest.HalfReader(bytes.NewReader(in.Bytes())))))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("RedactReader over %d bytes: %d bytes, %v; want %d bytes as masked", in.Len(), len(got), err, len(want))
	}

	pr, pw := io.Pipe()
	r := s.RedactReader(pr)
	go io.WriteString(pw, "data: {\"k\":\"shortkey1\"}\n\n")
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: {\"k\":\"sh…1\"}\n\n" {
		t.Errorf("first Read = %q, %v; want the whole event at once", buf[:n], err)
	}
	pw.Close()
}

func FuzzSetRedact(f *testing.F) {
	s := NewSet(setKeys)
	for _, tc := range setCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkStream(t, s, in)
	})
}

// TestSetManyLengths: a pool of keys of many lengths and shapes, found in
// random text at random places, glued to anything, as a map of every key
// finds them.
func TestSetManyLengths(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return string(b)
	}
	keys := make([]string, 5000)
	byKey := map[string]bool{}
	for i := range keys {
		keys[i] = []string{"sk-proj-", "sk-ant-api03-", "AIza", ""}[i%4] + word(20+rnd.IntN(60))
		byKey[keys[i]] = true
	}
	s := NewSet(keys)
	for range 50 {
		var in strings.Builder
		for range 20 {
			in.WriteString(word(rnd.IntN(40)))
			in.WriteString([]string{`\u0027`, `\n`, "%3D", "\"", "", "="}[rnd.IntN(6)])
			in.WriteString(keys[rnd.IntN(len(keys))])
		}
		b := []byte(in.String())
		// The oracle: every length at every end, longest first.
		var out []byte
		last := 0
		for end := 1; end <= len(b); end++ {
			for n := 80 + 13; n >= 1; n-- {
				if n > end || !byKey[string(b[end-n:end])] || end <= last {
					continue
				}
				if start := end - n; start > last {
					out = append(out, b[last:start]...)
				}
				out = AppendMask(out, string(b[end-n:end]))
				last = end
			}
		}
		out = append(out, b[last:]...)
		if got := s.Redact(b); !bytes.Equal(got, out) {
			t.Fatalf("Redact(%q) = %q; want %q", b, got, out)
		}
	}
}

// BenchmarkSetRedact masks an error body against pools of a thousand and
// a million keys: the cost must not grow with the pool. "typical" is
// OpenAI's 300-byte answer to a wrong key, quoting it; "64KiB" the same
// answer at the end of 64 KiB of text made of key bytes (the worst case
// for the search: every byte could end a key), read whole; "64KiB-stream"
// the same body through RedactReader, as a large error body is.
func BenchmarkSetRedact(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("sk-proj-%040d", i)
		}
		s := NewSet(keys)
		typical := []byte(`{"error":{"message":"Incorrect API key provided: sk-proj-` + fmt.Sprintf("%040d", n/2) + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		large := append(bytes.Repeat([]byte("abcdefghij0123456789"), (64<<10-len(typical))/20), typical...)
		for _, body := range []struct {
			name string
			b    []byte
		}{{"typical", typical}, {"64KiB", large}} {
			b.Run(fmt.Sprintf("%d/%s", n, body.name), func(b *testing.B) {
				b.SetBytes(int64(len(body.b)))
				b.ReportAllocs()
				for b.Loop() {
					s.Redact(body.b)
				}
			})
		}
		b.Run(fmt.Sprintf("%d/64KiB-stream", n), func(b *testing.B) {
			b.SetBytes(int64(len(large)))
			b.ReportAllocs()
			for b.Loop() {
				io.Copy(io.Discard, s.RedactReader(io.NopCloser(bytes.NewReader(large))))
			}
		})
	}
}

func BenchmarkNewSet(b *testing.B) {
	keys := make([]string, 1000000)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-proj-%040d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		NewSet(keys)
	}
}
