package keymanager

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"strings"
	"unsafe"
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
	p, err := parseOwned(data)
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
	return parseOwned(data)
}

// parseOwned is Parse for bytes nobody else holds: the keys point into
// them rather than into a copy, which spares a million-key file a second
// 52 MB and the time to copy it.
func parseOwned(data []byte) (Parsed, error) {
	if len(data) == 0 {
		return parse("")
	}
	return parse(unsafe.String(&data[0], len(data)))
}

// Parse reads one key per line. Surrounding whitespace (and so CRLF) is
// trimmed, a leading UTF-8 byte order mark is ignored, blank lines and lines
// starting with '#' are skipped, and repeated keys are dropped and counted.
// A key holding a control character is an error that names the line, since
// it could never be sent in a header. No key at all is ErrNoKeys.
//
// The keys share one string with the file's contents, so a million keys cost
// one copy of the file plus a slice, not a million allocations.
func Parse(data []byte) (Parsed, error) { return parse(string(data)) }

func parse(text string) (Parsed, error) {
	text = strings.TrimPrefix(text, "\xef\xbb\xbf")
	estimate := strings.Count(text, "\n") + 1
	keys := make([]string, 0, estimate)
	seen := newKeySet(estimate)
	dups := 0
	for lineNo := 1; text != ""; lineNo++ {
		line, rest, _ := strings.Cut(text, "\n")
		text = rest
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if hasControl(line) {
			return Parsed{}, fmt.Errorf("line %d: key contains a control character", lineNo)
		}
		if !seen.add(line, keys) {
			dups++
			continue
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return Parsed{}, ErrNoKeys
	}
	return Parsed{Keys: keys, Duplicates: dups}, nil
}

// hasControl reports whether s holds an ASCII control character. Bytes of
// multi-byte UTF-8 sequences are all >= 0x80, so a byte scan is exact.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// keySet finds repeated keys: an open-addressing table, at most half
// full, of indexes into the keys kept so far, each beside the top half of
// its key's hash so that a probe rarely has to read a key. For a million
// keys it is 16 MB of integers the collector need not scan, where a
// map[string]struct{} took over 40 MB and most of the parse time.
type keySet struct {
	seed  maphash.Seed
	slots []uint64 // hash>>32<<32 | index+1 into keys; 0 is empty
	mask  uint64
}

func newKeySet(n int) *keySet {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return &keySet{seed: maphash.MakeSeed(), slots: make([]uint64, size), mask: uint64(size - 1)}
}

// add records key, which will be keys[len(keys)], and reports whether it
// is new.
func (s *keySet) add(key string, keys []string) bool {
	h := maphash.String(s.seed, key)
	tag := h &^ (1<<32 - 1)
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		e := s.slots[i]
		if e == 0 {
			s.slots[i] = tag | uint64(len(keys)+1)
			return true
		}
		if e&^(1<<32-1) == tag && keys[uint32(e)-1] == key {
			return false
		}
	}
}
