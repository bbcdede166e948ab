package secret

import (
	"strings"

	"github.com/gpt-load/gpt-load/internal/ascii"
)

// minSecretLen is the shortest token Redact treats as a key. Real provider
// keys are far longer (OpenAI 51+, Gemini 39, Anthropic 100+); ordinary words
// and identifiers in error messages are shorter or lack digits.
const minSecretLen = 20

// Redact masks every key-shaped token in s: a run of at least 20 characters
// from [A-Za-z0-9_-] that holds both a letter and a digit. It is meant for
// upstream error bodies echoed in logs, which sometimes quote the key that
// was sent ("Incorrect API key provided: sk-..."). Text without such a token
// is returned unchanged and without allocation.
func Redact(s string) string {
	var b strings.Builder
	last := 0 // end of the part of s already copied to b
	for i := 0; i < len(s); {
		if !isCore(s[i]) {
			i++
			continue
		}
		j := i
		letter, digit := false, false
		for j < len(s) && isCore(s[j]) {
			c := s[j]
			letter = letter || (c|0x20 >= 'a' && c|0x20 <= 'z')
			digit = digit || (c >= '0' && c <= '9')
			j++
		}
		if j-i >= minSecretLen && letter && digit {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[last:i])
			b.WriteString(Mask(s[i:j]))
			last = j
		}
		i = j
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// isCore reports whether c is a letter, a digit, - or _: what almost every
// provider key is made of.
func isCore(c byte) bool {
	return ascii.IsAlnum(c) || c == '-' || c == '_'
}
