// Package secret keeps API keys out of logs, errors and JSON: a Key prints
// only as its mask, and Mask and Redact are the one place masking is decided.
package secret

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Ellipsis joins the visible head and tail of a masked key.
const Ellipsis = "…"

// Mask returns a preview of s that is safe to log: at most the first 6 and
// the last 4 characters, and fewer for short values, so that never more than
// about half of a short key is shown. Values of fewer than 4 characters
// reveal nothing. Mask is a pure function.
func Mask(s string) string {
	var buf [64]byte // a mask is at most 10 runes and the ellipsis
	return string(AppendMask(buf[:0], s))
}

// AppendMask appends Mask(s) to dst and returns the extended slice, for
// callers that look at many masks and keep none (filtering a large pool).
func AppendMask(dst []byte, s string) []byte {
	n := utf8.RuneCountInString(s)
	head, tail := min(6, n/4), min(4, n/5)
	if n == len(s) { // ASCII: the common case, no rune decoding
		dst = append(dst, s[:head]...)
		dst = append(dst, Ellipsis...)
		return append(dst, s[len(s)-tail:]...)
	}
	r := []rune(s)
	for _, c := range r[:head] {
		dst = utf8.AppendRune(dst, c)
	}
	dst = append(dst, Ellipsis...)
	for _, c := range r[n-tail:] {
		dst = utf8.AppendRune(dst, c)
	}
	return dst
}

// Key is an API key. It prints, formats and marshals only as its mask; the
// raw value is reachable through Reveal, which only the code that builds an
// upstream request calls. The zero Key is empty. A Key is immutable and safe
// for concurrent use.
type Key struct {
	v string
}

// NewKey wraps a raw key.
func NewKey(raw string) Key { return Key{v: raw} }

// Reveal returns the raw key, for setting it on an upstream request.
func (k Key) Reveal() string { return k.v }

// Empty reports whether the key is the empty string.
func (k Key) Empty() bool { return k.v == "" }

// AppendMask appends the mask to dst.
func (k Key) AppendMask(dst []byte) []byte { return AppendMask(dst, k.v) }

// String returns the mask.
func (k Key) String() string { return Mask(k.v) }

// GoString returns the mask, so %#v does not leak the key either.
func (k Key) GoString() string { return "secret.Key(" + Mask(k.v) + ")" }

// Format prints the mask for every verb.
func (k Key) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, k.GoString())
		return
	}
	fmt.Fprint(f, Mask(k.v))
}

// MarshalJSON renders the mask as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(Mask(k.v)) }

// MarshalText renders the mask, for encoders that prefer text.
func (k Key) MarshalText() ([]byte, error) { return []byte(Mask(k.v)), nil }
