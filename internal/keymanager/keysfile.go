package keymanager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNoKeys is returned by ParseFile when the file holds no key.
var ErrNoKeys = errors.New("no keys")

// Parsed is the result of reading a keys file.
type Parsed struct {
	Keys       []string // in file order, duplicates dropped
	Duplicates int      // lines dropped because the key appeared earlier
}

// ParseFile reads the keys file at path. See Parse for the format. Errors
// name the path, never a key.
func ParseFile(path string) (Parsed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Parsed{}, fmt.Errorf("keys file %q: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return Parsed{}, fmt.Errorf("keys file %q: %w", path, err)
	}
	return p, nil
}

// ParseReader is Parse for a reader.
func ParseReader(r io.Reader) (Parsed, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Parsed{}, err
	}
	return Parse(data)
}

// Parse reads one key per line. Surrounding whitespace (and so CRLF) is
// trimmed, a leading UTF-8 byte order mark is ignored, blank lines and lines
// starting with '#' are skipped, and repeated keys are dropped and counted.
// A key holding a control character is an error that names the line, since
// it could never be sent in a header. No key at all is ErrNoKeys.
//
// The keys share one string with the file's contents, so a million keys cost
// one copy of the file plus a slice, not a million allocations.
func Parse(data []byte) (Parsed, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	text := string(data)
	estimate := bytes.Count(data, []byte{'\n'}) + 1
	keys := make([]string, 0, estimate)
	seen := make(map[string]struct{}, estimate)
	dups := 0
	for lineNo := 1; text != ""; lineNo++ {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexFunc(line, isControl); i >= 0 {
			return Parsed{}, fmt.Errorf("line %d: key contains a control character", lineNo)
		}
		if _, ok := seen[line]; ok {
			dups++
			continue
		}
		seen[line] = struct{}{}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return Parsed{}, ErrNoKeys
	}
	return Parsed{Keys: keys, Duplicates: dups}, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
