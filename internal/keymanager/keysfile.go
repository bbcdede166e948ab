package keymanager

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// ErrNoKeys is returned by ParseFile when the file holds no key.
var ErrNoKeys = errors.New("no keys")

// Parsed is the result of reading a keys file.
type Parsed struct {
	Keys       []string // in file order, duplicates dropped
	Duplicates int      // lines dropped because the key appeared earlier
	// Spaced lists, in order, the 1-based numbers of the lines skipped
	// because whitespace remained inside them once trimmed and rid of a
	// comment ("sk-a sk-b", "Bearer sk-a"): no key holds a space. Callers
	// warn with the numbers, never the text.
	Spaced []int
}

// SpacedWarning is the warning for Parsed.Spaced, logged with SpacedFields.
const SpacedWarning = "skipped keys-file lines that hold whitespace inside: a key has none (a comment starts with # after a space)"

// SpacedFields are the log fields of SpacedWarning: how many lines, and
// the numbers of the first ten; never their text.
func SpacedFields(lines []int) map[string]any {
	return map[string]any{"count": len(lines), "lines": fmt.Sprint(lines[:min(len(lines), 10)])}
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
// starting with '#' are skipped, a '#' after whitespace starts a comment
// ("sk-a  # team A" is the key sk-a), a line that still holds whitespace is
// skipped and its number listed in Spaced, and repeated keys are dropped and
// counted. A key holding a control character is an error that names the
// line, since it could never be sent in a header. No key at all is
// ErrNoKeys.
//
// The keys share one string with the file's contents, so a million keys cost
// one copy of the file plus a slice, not a million allocations.
func Parse(data []byte) (Parsed, error) { return parse(string(data)) }

// parallelParse is the file size from which parsing is split over the
// cores: a million keys are 52 MB.
const parallelParse = 1 << 20

func parse(text string) (Parsed, error) {
	parts := 1
	if len(text) >= parallelParse {
		parts = min(runtime.GOMAXPROCS(0), 8)
	}
	return parseParts(text, parts)
}

// parseParts is parse with the work split in parts: the text in parts
// that end at line ends, each scanned on its own goroutine into its lines'
// slots, then duplicates found by parts of the hash space, each with its
// own table, and the keys compacted in file order. Every step keeps file
// order, so the result is the same for any number of parts.
func parseParts(text string, parts int) (Parsed, error) {
	text = strings.TrimPrefix(text, "\xef\xbb\xbf")
	chunks := splitAtLines(text, parts)
	first := make([]int, len(chunks)+1) // first[i]: line index where chunk i starts
	inParallel(len(chunks), func(i int) { first[i+1] = countLines(chunks[i]) })
	for i := range chunks {
		first[i+1] += first[i]
	}
	lines := first[len(chunks)]
	keys := make([]string, lines) // slot per line; "" where no key
	hashes := make([]uint64, lines)
	bad := make([]int, len(chunks))      // 1-based line in the file of a key with a control character
	spaced := make([][]int, len(chunks)) // 1-based lines holding whitespace, per chunk
	seed := maphash.MakeSeed()
	inParallel(len(chunks), func(i int) {
		text := chunks[i]
		for j := first[i]; text != ""; j++ {
			line, rest, _ := strings.Cut(text, "\n")
			text = rest
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			// A key is printable ASCII: one scan passes it. Anything
			// else (whitespace, so perhaps a comment; a control
			// character; non-ASCII) is looked at closer.
			if !plain(line) {
				line = cutComment(line)
				switch {
				case hasControl(line):
					bad[i] = j + 1
					return
				case strings.IndexFunc(line, unicode.IsSpace) >= 0:
					spaced[i] = append(spaced[i], j+1)
					continue
				}
			}
			keys[j], hashes[j] = line, maphash.String(seed, line)
		}
	})
	for _, line := range bad {
		if line != 0 {
			return Parsed{}, fmt.Errorf("line %d: key contains a control character", line)
		}
	}
	var spacedLines []int
	for _, s := range spaced {
		spacedLines = append(spacedLines, s...)
	}
	dup := make([]bool, lines)
	inParallel(parts, func(p int) {
		set := newKeySet(lines/parts + 1)
		for j, h := range hashes {
			if keys[j] != "" && int(h>>56)%parts == p && !set.add(h, j, keys) {
				dup[j] = true
			}
		}
	})
	n, dups := 0, 0
	for j, k := range keys {
		switch {
		case k == "":
		case dup[j]:
			dups++
		default:
			keys[n] = k
			n++
		}
	}
	if n == 0 {
		return Parsed{}, ErrNoKeys
	}
	return Parsed{Keys: keys[:n:n], Duplicates: dups, Spaced: spacedLines}, nil
}

// splitAtLines cuts text into at most parts pieces of about equal size,
// each but the last ending with a newline.
func splitAtLines(text string, parts int) []string {
	out := make([]string, 0, parts)
	for p := parts; p > 1 && text != ""; p-- {
		cut := len(text) / p
		i := strings.IndexByte(text[cut:], '\n')
		if i < 0 {
			break
		}
		out = append(out, text[:cut+i+1])
		text = text[cut+i+1:]
	}
	return append(out, text)
}

// countLines is how many lines parse sees in text.
func countLines(text string) int {
	n := strings.Count(text, "\n")
	if text != "" && text[len(text)-1] != '\n' {
		n++
	}
	return n
}

// inParallel runs f(0) … f(n-1), each on its own goroutine when n > 1,
// and returns when all are done.
func inParallel(n int, f func(int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// plain reports whether s is printable ASCII without spaces, as every key
// is: nothing in it to cut or to check.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// cutComment drops a comment from a trimmed line: from the first '#' that
// follows whitespace, and the whitespace before it.
func cutComment(line string) string {
	for i := 1; i < len(line); i++ {
		if line[i] != '#' {
			continue
		}
		if r, _ := utf8.DecodeLastRuneInString(line[:i]); unicode.IsSpace(r) {
			return strings.TrimSpace(line[:i])
		}
	}
	return line
}

// hasControl reports whether s holds an ASCII control character other than
// whitespace (a tab or a lone CR inside a line makes it a spaced line, not
// an error). Bytes of multi-byte UTF-8 sequences are all >= 0x80, so a byte
// scan is exact.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && (c < '\t' || c > '\r')) || c == 0x7f {
			return true
		}
	}
	return false
}

// keySet finds repeated keys: an open-addressing table, at most half
// full, of indexes into the keys, each beside the top half of its key's
// hash so that a probe rarely has to read a key. For a million keys it is
// 16 MB of integers the collector need not scan, where a
// map[string]struct{} took over 40 MB and most of the parse time.
type keySet struct {
	slots []uint64 // hash>>32<<32 | index+1 into keys; 0 is empty
	mask  uint64
}

func newKeySet(n int) *keySet {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return &keySet{slots: make([]uint64, size), mask: uint64(size - 1)}
}

// add records keys[j], whose hash is h, and reports whether it is new:
// no key added before is equal to it.
func (s *keySet) add(h uint64, j int, keys []string) bool {
	tag := h &^ (1<<32 - 1)
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		e := s.slots[i]
		if e == 0 {
			s.slots[i] = tag | uint64(j+1)
			return true
		}
		if e&^(1<<32-1) == tag && keys[uint32(e)-1] == keys[j] {
			return false
		}
	}
}
