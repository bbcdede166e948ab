package secret

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var setKeys = []string{
	"sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
	"AIzaSyA1234567890abcdefghijklmnopqrstu",
	"shortkey1",
	"x.y:z",
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
	{"key inside a longer token is not whole", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789X", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789X"},
	{"a key not in the pool", "sk-proj-ZZZZEfGhIjKlMnOpQrStUvWxYz0123456789", "sk-proj-ZZZZEfGhIjKlMnOpQrStUvWxYz0123456789"},
	{"key at both ends", "shortkey1 shortkey1", "sh…1 sh…1"},
}

func TestSetRedact(t *testing.T) {
	s := NewSet(setKeys)
	for _, tc := range setCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(s.Redact([]byte(tc.in))); got != tc.want {
				t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
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
}

// checkStream is the oracle shared with FuzzSetRedact: reading through
// RedactReader, in reads of any size, gives exactly what Redact gives on
// the whole input, and no key of the set that appears whole survives.
func checkStream(t *testing.T, s *Set, in []byte) {
	t.Helper()
	want := s.Redact(in)
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
	// Independent check: split on bytes no key uses; a field equal to a
	// key must not be in the output as a field.
	isSep := func(r rune) bool { return r >= 0x80 || !s.class[byte(r)] }
	for _, f := range strings.FieldsFunc(string(want), isSep) {
		for _, k := range setKeys {
			if f == k {
				t.Fatalf("Redact(%q) = %q; key %q left whole", in, want, k)
			}
		}
	}
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

// BenchmarkSetRedact scans a typical error body against a pool of a
// million keys: the cost must not grow with the pool.
func BenchmarkSetRedact(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("sk-proj-%040d", i)
		}
		s := NewSet(keys)
		body := []byte(`{"error":{"message":"Incorrect API key provided: sk-proj-` + fmt.Sprintf("%040d", n/2) + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}`)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Redact(body)
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
