package proxy

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/gpt-load/gpt-load/internal/ascii"
)

// maxModelDigest bounds the digest modelDigest builds: beyond it the body
// is not worth more memory and no model is read.
const maxModelDigest = 64 << 10

// modelDigest reads a JSON body from r and returns a small document that
// modelname.FromBody reads exactly as it would read the whole body: the
// top-level members up to the "model" member, each other value replaced by
// 0, and the model's own value as it is. It is for bodies spooled to a
// file, which are not read back into memory for this. Input FromBody would
// reject yields a digest it rejects too (or nil).
func modelDigest(r *bufio.Reader) []byte {
	out := make([]byte, 0, 256)
	c, ok := nextNonSpace(r)
	if !ok || c != '{' {
		return nil
	}
	out = append(out, '{')
	for len(out) <= maxModelDigest {
		c, ok = nextNonSpace(r)
		if !ok || c != '"' {
			return out // '}' or not JSON: FromBody finds no model here either
		}
		key, ok := readString(r, 64)
		if !ok {
			return nil
		}
		if key == nil {
			key = []byte(`"x"`) // too long to be "model", however escaped
		}
		out = append(out, key...)
		if c, ok = nextNonSpace(r); !ok || c != ':' {
			return nil
		}
		out = append(out, ':')
		if isModelKey(key) {
			if c, ok = nextNonSpace(r); !ok || c != '"' {
				return nil
			}
			val, ok := readString(r, 4<<10)
			if !ok || val == nil {
				return nil
			}
			return append(append(out, val...), '}')
		}
		if !skipValueR(r) {
			return nil
		}
		out = append(out, '0')
		if c, ok = nextNonSpace(r); !ok || c != ',' {
			return nil
		}
		out = append(out, ',')
	}
	return nil
}

// isModelKey is FromBody's test for the member name, on its literal.
func isModelKey(lit []byte) bool {
	if string(lit) == `"model"` {
		return true
	}
	var s string
	return json.Unmarshal(lit, &s) == nil && s == "model"
}

func nextNonSpace(r *bufio.Reader) (byte, bool) {
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, false
		}
		if !ascii.IsSpace(c) {
			return c, true
		}
	}
}

// readString reads the rest of a string literal whose opening quote was
// read, and returns the whole literal; nil (and true) when it is longer
// than limit; false when it is not closed.
func readString(r *bufio.Reader, limit int) ([]byte, bool) {
	var lit []byte // nil: keeping nothing (limit 0 skips without allocating)
	if limit > 0 {
		lit = append(make([]byte, 0, 32), '"')
	}
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, false
		}
		if lit != nil {
			lit = append(lit, c)
		}
		switch c {
		case '\\':
			n, err := r.ReadByte()
			if err != nil {
				return nil, false
			}
			if lit != nil {
				lit = append(lit, n)
			}
		case '"':
			return lit, true
		}
		if lit != nil && len(lit) > limit {
			lit = nil // keep reading to the end, keep nothing
		}
	}
}

// skipValueR skips one value the way FromBody does: a string, an object
// or array (brackets counted, strings skipped), or a scalar up to the next
// delimiter, which is left unread.
func skipValueR(r *bufio.Reader) bool {
	c, ok := nextNonSpace(r)
	if !ok {
		return false
	}
	switch c {
	case '"':
		_, ok := readString(r, 0)
		return ok
	case '{', '[':
		depth := 1
		for depth > 0 {
			c, err := r.ReadByte()
			if err != nil {
				return false
			}
			switch c {
			case '"':
				if _, ok := readString(r, 0); !ok {
					return false
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		return true
	case ',', '}', ']':
		return false // an empty scalar
	}
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if c == ',' || c == '}' || c == ']' || ascii.IsSpace(c) {
			r.UnreadByte()
			return true
		}
	}
}
