package ascii

import (
	"encoding/json"
	"testing"
	"unicode"
)

// TestIsAlnum checks every byte against the unicode package's classes,
// limited to ASCII.
func TestIsAlnum(t *testing.T) {
	for i := range 256 {
		c := byte(i)
		want := c < 0x80 && (unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)))
		if got := IsAlnum(c); got != want {
			t.Errorf("IsAlnum(%q) = %v; want %v", c, got, want)
		}
	}
}

// TestIsSpace checks every byte against encoding/json: a byte is JSON
// white space when an empty object holding it is still valid.
func TestIsSpace(t *testing.T) {
	for i := range 256 {
		c := byte(i)
		want := json.Valid([]byte{'{', c, '}'})
		if got := IsSpace(c); got != want {
			t.Errorf("IsSpace(%q) = %v; want %v", c, got, want)
		}
	}
}
