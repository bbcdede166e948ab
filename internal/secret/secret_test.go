package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
)

// maskCases seed both TestMask and FuzzMask.
var maskCases = []struct {
	name, in, want string
}{
	{"empty", "", "…"},
	{"one char", "a", "…"},
	{"three chars", "abc", "…"},
	{"four chars", "abcd", "a…"},
	{"five chars", "abcde", "a…e"},
	{"eight chars", "abcdefgh", "ab…h"},
	{"ten chars", "abcdefghij", "ab…ij"},
	{"twenty chars", "abcdefghijklmnopqrst", "abcde…qrst"},
	{"twenty four chars", "abcdefghijklmnopqrstuvwx", "abcdef…uvwx"},
	{"openai legacy", "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLwxyz", "sk-abc…wxyz"},
	{"openai project", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefghijklmn1234", "sk-pro…1234"},
	{"gemini", "AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSy…rstu"},
	{"anthropic", "sk-ant-api03-" + strings.Repeat("x", 90) + "AAAA", "sk-ant…AAAA"},
	{"cyrillic", "ключ-абвгдежзийклмноп", "ключ-…мноп"},
	{"cjk short", "密钥密钥密钥密钥", "密钥…钥"},
	{"emoji", "🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑", "🔑🔑🔑🔑🔑🔑…🔑🔑🔑🔑"},
	{"mixed ascii and accents", "sk-éèêëàâäôöûü1234567890", "sk-éèê…7890"},
	{"ellipses", "…………………………", "……………"},
	{"invalid utf8", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "\xff\xfe…\xf8"},
}

func TestMask(t *testing.T) {
	for _, tc := range maskCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mask(tc.in); got != tc.want {
				t.Errorf("Mask(%q) = %q; want %q", tc.in, got, tc.want)
			}
			checkMask(t, tc.in, Mask(tc.in))
			if got := string(AppendMask([]byte("x"), tc.in)); got != "x"+tc.want {
				t.Errorf("AppendMask(%q, %q) = %q; want %q", "x", tc.in, got, "x"+tc.want)
			}
		})
	}
}

// checkMask is the oracle shared by TestMask and FuzzMask: the mask is a
// prefix of at most 6 runes, the ellipsis, and a suffix of at most 4 runes,
// together never more than half of the input, and never the whole input.
// It compares runes so that invalid UTF-8 (one U+FFFD per bad byte) is
// judged the same whichever way Mask decodes it.
func checkMask(t *testing.T, in, got string) {
	t.Helper()
	r := []rune(in)
	n := len(r)
	gr := []rune(got)
	ok := false
	for h := 0; h <= min(6, n) && !ok; h++ {
		for tl := 0; tl <= min(4, n-h) && !ok; tl++ {
			if 2*(h+tl) > n {
				continue
			}
			want := slices.Concat(r[:h], []rune(Ellipsis), r[n-tl:])
			ok = slices.Equal(gr, want)
		}
	}
	if !ok {
		t.Errorf("Mask(%q) = %q; want head(≤6 runes)+%q+tail(≤4 runes) with head+tail ≤ %d runes", in, got, Ellipsis, n/2)
	}
	if n >= 4 && strings.Contains(got, in) {
		t.Errorf("Mask(%q) = %q; want a result that does not contain the input", in, got)
	}
	if utf8.ValidString(in) && !utf8.ValidString(got) {
		t.Errorf("Mask(%q) = %q; want valid UTF-8 for valid input", in, got)
	}
}

func FuzzMask(f *testing.F) {
	for _, tc := range maskCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkMask(t, in, Mask(in))
		if got := string(NewKey(in).AppendMask(nil)); got != Mask(in) {
			t.Errorf("Key.AppendMask(nil) = %q; want Mask = %q", got, Mask(in))
		}
	})
}

func TestAppendMaskDoesNotAllocate(t *testing.T) {
	k := NewKey(rawKey)
	buf := make([]byte, 0, 64)
	if allocs := testing.AllocsPerRun(100, func() { buf = k.AppendMask(buf[:0]) }); allocs != 0 {
		t.Errorf("AppendMask allocations = %v; want 0", allocs)
	}
}

const rawKey = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"

// holder is a struct with a Key inside, as config and monitoring types have.
type holder struct {
	Name string
	Key  Key
	Ptr  *Key
}

func TestKeyNeverPrintsRaw(t *testing.T) {
	k := NewKey(rawKey)
	mask := Mask(rawKey)
	h := holder{Name: "x", Key: k, Ptr: &k}
	cases := []struct {
		name string
		out  func() (string, error)
	}{
		{"String", func() (string, error) { return k.String(), nil }},
		{"GoString", func() (string, error) { return k.GoString(), nil }},
		{"%v", func() (string, error) { return fmt.Sprintf("%v", k), nil }},
		{"%+v", func() (string, error) { return fmt.Sprintf("%+v", k), nil }},
		{"%#v", func() (string, error) { return fmt.Sprintf("%#v", k), nil }},
		{"%s", func() (string, error) { return fmt.Sprintf("%s", k), nil }},
		{"%q", func() (string, error) { return fmt.Sprintf("%q", k), nil }},
		{"%x", func() (string, error) { return fmt.Sprintf("%x", k), nil }},
		{"%X", func() (string, error) { return fmt.Sprintf("%X", k), nil }},
		{"%d", func() (string, error) { return fmt.Sprintf("%d", k), nil }},
		{"%10.3s", func() (string, error) { return fmt.Sprintf("%10.3s", k), nil }},
		{"pointer %v", func() (string, error) { return fmt.Sprintf("%v", &k), nil }},
		{"Sprint", func() (string, error) { return fmt.Sprint(k), nil }},
		{"Sprintln", func() (string, error) { return fmt.Sprintln("key", k), nil }},
		{"struct %v", func() (string, error) { return fmt.Sprintf("%v", h), nil }},
		{"struct %+v", func() (string, error) { return fmt.Sprintf("%+v", h), nil }},
		{"struct %#v", func() (string, error) { return fmt.Sprintf("%#v", h), nil }},
		{"slice %v", func() (string, error) { return fmt.Sprintf("%v", []Key{k, k}), nil }},
		{"map %v", func() (string, error) { return fmt.Sprintf("%v", map[string]any{"key": k}), nil }},
		{"error wrap", func() (string, error) { return fmt.Errorf("using %v: %w", k, fmt.Errorf("boom")).Error(), nil }},
		{"logrus text field", func() (string, error) { return logLine(&logrus.TextFormatter{DisableColors: true}, k), nil }},
		{"logrus json field", func() (string, error) { return logLine(&logrus.JSONFormatter{}, k), nil }},
		{"logrus Infof", func() (string, error) {
			var buf bytes.Buffer
			l := logrus.New()
			l.SetOutput(&buf)
			l.Infof("selected %v (%s) %+v", k, k, h)
			return buf.String(), nil
		}},
		{"json", func() (string, error) { b, err := json.Marshal(k); return string(b), err }},
		{"json pointer", func() (string, error) { b, err := json.Marshal(&k); return string(b), err }},
		{"json struct", func() (string, error) { b, err := json.Marshal(h); return string(b), err }},
		{"json map", func() (string, error) { b, err := json.Marshal(map[string]any{"key": k}); return string(b), err }},
		{"json map key", func() (string, error) { b, err := json.Marshal(map[Key]int{k: 1}); return string(b), err }},
		{"MarshalText", func() (string, error) { b, err := k.MarshalText(); return string(b), err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.out()
			if err != nil {
				t.Fatalf("%s: error %v; want nil", tc.name, err)
			}
			if strings.Contains(got, rawKey) {
				t.Errorf("%s = %q; want no raw key", tc.name, got)
			}
			if !strings.Contains(got, mask) {
				t.Errorf("%s = %q; want it to contain the mask %q", tc.name, got, mask)
			}
		})
	}
}

// logLine logs k as a field with the given formatter and returns the line.
func logLine(f logrus.Formatter, k Key) string {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(f)
	l.WithField("key", k).WithField("ptr", &k).Info("picked")
	return buf.String()
}

func TestKeyJSONIsMaskString(t *testing.T) {
	b, err := json.Marshal(NewKey(rawKey))
	if err != nil {
		t.Fatalf("json.Marshal(key) error %v; want nil", err)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("json.Unmarshal(%s) error %v; want a JSON string", b, err)
	}
	if want := Mask(rawKey); s != want {
		t.Errorf("json.Marshal(key) = %s; want %q", b, want)
	}
}

func TestKeyRevealAndEmpty(t *testing.T) {
	cases := []struct {
		name  string
		key   Key
		raw   string
		empty bool
	}{
		{"zero", Key{}, "", true},
		{"empty", NewKey(""), "", true},
		{"set", NewKey(rawKey), rawKey, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.key.Reveal(); got != tc.raw {
				t.Errorf("Reveal() = %q; want %q", got, tc.raw)
			}
			if got := tc.key.Empty(); got != tc.empty {
				t.Errorf("Empty() = %v; want %v", got, tc.empty)
			}
		})
	}
}
