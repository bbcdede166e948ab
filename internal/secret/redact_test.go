package secret

import (
	"strings"
	"testing"
)

// redactCases seed both TestRedact and FuzzRedact.
var redactCases = []struct {
	name, in, want string
}{
	{"empty", "", ""},
	{"plain text", "Rate limit reached for requests", "Rate limit reached for requests"},
	{"long word without digits", "internationalization_of_everything", "internationalization_of_everything"},
	{"long number without letters", "12345678901234567890123", "12345678901234567890123"},
	{"short token with digits", "req_abc123def456", "req_abc123def456"},
	{"nineteen chars", "abcdefghij123456789", "abcdefghij123456789"},
	{"twenty chars", "abcdefghij1234567890", "abcde…7890"},
	{
		"openai invalid key message",
		"Incorrect API key provided: sk-proj-abc123def456ghi789jkl012mno345. You can find your API key at https://platform.openai.com/account/api-keys.",
		"Incorrect API key provided: sk-pro…o345. You can find your API key at https://platform.openai.com/account/api-keys.",
	},
	{
		"json body",
		`{"error":{"message":"API key not valid: AIzaSyA1234567890abcdefghijklmnopqrstu","status":"INVALID_ARGUMENT"}}`,
		`{"error":{"message":"API key not valid: AIzaSy…rstu","status":"INVALID_ARGUMENT"}}`,
	},
	{"two keys", "a=sk-aaaaaaaaaaaaaaaaaaaa1111 b=sk-bbbbbbbbbbbbbbbbbbbb2222", "a=sk-aaa…1111 b=sk-bbb…2222"},
	{"key at start and end", "sk-0123456789abcdefghij", "sk-01…ghij"},
	{"key beside non-ascii", "ключ:sk-0123456789abcdefghij…", "ключ:sk-01…ghij…"},
	{"request id is masked", "request id req_0123456789abcdefABCDEF", "request id req_01…CDEF"},
}

func TestRedact(t *testing.T) {
	for _, tc := range redactCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in)
			if got != tc.want {
				t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
			}
			checkRedact(t, tc.in, got)
		})
	}
}

func TestRedactNoKeyDoesNotAllocate(t *testing.T) {
	in := "The model `gpt-5` does not exist or you do not have access to it."
	allocs := testing.AllocsPerRun(100, func() { _ = Redact(in) })
	if allocs != 0 {
		t.Errorf("Redact(%q) allocations = %v; want 0", in, allocs)
	}
}

// keyShaped returns the tokens of s that Redact must mask: maximal runs of
// at least 20 bytes from [A-Za-z0-9_-] holding a letter and a digit. It is
// written independently of Redact, by splitting on every other byte.
func keyShaped(s string) []string {
	isTok := func(r rune) bool {
		return r < 0x80 && (r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}
	var out []string
	// FieldsFunc decodes runes; invalid bytes become U+FFFD, which is not a
	// token character, exactly like the bytes Redact skips.
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return !isTok(r) }) {
		if len(tok) >= 20 && strings.ContainsAny(tok, "0123456789") &&
			strings.ContainsAny(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			out = append(out, tok)
		}
	}
	return out
}

// checkRedact is the oracle shared by TestRedact and FuzzRedact: no key-shaped
// token of the input survives whole, the output holds no key-shaped token at
// all, and input without one comes back unchanged.
func checkRedact(t *testing.T, in, got string) {
	t.Helper()
	keys := keyShaped(in)
	if len(keys) == 0 && got != in {
		t.Errorf("Redact(%q) = %q; want the input unchanged", in, got)
	}
	for _, k := range keys {
		if strings.Contains(got, k) {
			t.Errorf("Redact(%q) = %q; want %q masked", in, got, k)
		}
	}
	if left := keyShaped(got); len(left) > 0 {
		t.Errorf("Redact(%q) = %q; want no key-shaped token, found %q", in, got, left)
	}
}

func FuzzRedact(f *testing.F) {
	for _, tc := range redactCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkRedact(t, in, Redact(in))
	})
}
