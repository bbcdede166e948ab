package secret

import (
	"hash/maphash"
	"io"
	"slices"

	"github.com/gpt-load/gpt-load/internal/ascii"
)

// Set holds a pool of raw keys in a form that finds them in text: a
// sorted table of their hashes, the bytes keys are made of, and their
// shortest and longest length. Looking a token up costs a hash and a
// binary search, whatever the pool's size; the set keeps 8 bytes per key
// and no copy of any key. A Set is immutable and safe for concurrent use.
type Set struct {
	seed   maphash.Seed
	hashes []uint64
	// class marks the bytes a run is made of: letters, digits, - and _,
	// and any other byte that occurs in some key.
	class          [256]bool
	minLen, maxLen int
	// runLimit is the longest run examined: a key with punctuation of its
	// own around it ("key." at the end of a sentence, when some key holds
	// a dot) fits; a longer run is left alone.
	runLimit int
}

// isCore reports whether c is a letter, a digit, - or _: what almost every
// provider key is made of.
func isCore(c byte) bool {
	return ascii.IsAlnum(c) || c == '-' || c == '_'
}

// NewSet builds the set of keys. Empty keys are ignored.
func NewSet(keys []string) *Set {
	s := &Set{seed: maphash.MakeSeed(), hashes: make([]uint64, 0, len(keys)), minLen: -1}
	for c := range 256 {
		s.class[c] = isCore(byte(c))
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		s.hashes = append(s.hashes, maphash.String(s.seed, k))
		for i := 0; i < len(k); i++ {
			s.class[k[i]] = true
		}
		if s.minLen < 0 || len(k) < s.minLen {
			s.minLen = len(k)
		}
		s.maxLen = max(s.maxLen, len(k))
	}
	slices.Sort(s.hashes)
	s.runLimit = 2*s.maxLen + 8
	return s
}

// Len is the number of keys in the set.
func (s *Set) Len() int { return len(s.hashes) }

// contains reports whether tok is one of the keys. Two different strings
// may share a hash; a token mistaken for a key is masked needlessly, which
// is harmless.
func (s *Set) contains(tok []byte) bool {
	if len(tok) < s.minLen || len(tok) > s.maxLen {
		return false
	}
	_, ok := slices.BinarySearch(s.hashes, maphash.Bytes(s.seed, tok))
	return ok
}

// Redact returns b with every key of the set that appears whole in it
// replaced by its Mask. A key appears whole when it is a run of key bytes
// (letters, digits, - and _, and other bytes some key holds) bounded by
// other bytes or the ends of b, or such a run with punctuation that keys
// also use trimmed from its ends, or a run of letters, digits, - and _
// inside it (so "sk-…abc." at the end of a sentence is found even when
// some key holds a dot). Without such a key, b itself is returned,
// unchanged and without allocation.
func (s *Set) Redact(b []byte) []byte {
	if s == nil || len(s.hashes) == 0 {
		return b
	}
	var out []byte
	last := 0 // end of the part of b already copied to out
	for i := 0; i < len(b); {
		if !s.class[b[i]] {
			i++
			continue
		}
		j := i
		for j < len(b) && s.class[b[j]] {
			j++
		}
		if j-i <= s.runLimit {
			for _, m := range s.find(b[i:j]) {
				if out == nil {
					out = make([]byte, 0, len(b))
				}
				out = append(out, b[last:i+m[0]]...)
				out = append(out, Mask(string(b[i+m[0]:i+m[1]]))...)
				last = i + m[1]
			}
		}
		i = j
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// find returns the spans of run that are keys, in order; usually none.
func (s *Set) find(run []byte) [][2]int {
	if len(run) < s.minLen {
		return nil
	}
	if s.contains(run) {
		return [][2]int{{0, len(run)}}
	}
	lo, hi := 0, len(run)
	for lo < hi && !isCore(run[lo]) {
		lo++
	}
	for hi > lo && !isCore(run[hi-1]) {
		hi--
	}
	if lo == hi {
		return nil
	}
	if (lo > 0 || hi < len(run)) && s.contains(run[lo:hi]) {
		return [][2]int{{lo, hi}}
	}
	var spans [][2]int
	for i := lo; i < hi; {
		j := i
		for j < hi && isCore(run[j]) {
			j++
		}
		if j == hi && i == lo {
			break // one core run: already tried whole
		}
		if j > i && s.contains(run[i:j]) {
			spans = append(spans, [2]int{i, j})
		}
		i = max(j, i+1)
	}
	return spans
}

// RedactReader returns a reader of r's bytes with the set's keys masked as
// Redact would mask them in the whole stream, however r splits it: a run
// that might be a key is held back until its end is seen, and a run
// longer than any key is passed on at once. Closing it closes r.
func (s *Set) RedactReader(r io.ReadCloser) io.ReadCloser {
	return &redactReader{s: s, src: r}
}

type redactReader struct {
	s   *Set
	src io.ReadCloser
	in  []byte // read but not yet scanned: at most one unfinished run
	out []byte // scanned, ready for Read
	// skipping: the bytes passed on last were a run longer than Redact
	// examines, and it has not ended yet.
	skipping bool
	err      error
	chunk    []byte
}

func (r *redactReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.chunk == nil {
			r.chunk = make([]byte, 16<<10)
		}
		n, err := r.src.Read(r.chunk)
		r.in = append(r.in, r.chunk[:n]...)
		if err != nil {
			r.err = err
		}
		r.scan(err != nil)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// scan moves what can be decided from in to out; final: no more input.
func (r *redactReader) scan(final bool) {
	data := r.in
	r.out = r.out[:0]
	if r.skipping {
		i := 0
		for i < len(data) && r.s.class[data[i]] {
			i++
		}
		r.out = append(r.out, data[:i]...)
		data = data[i:]
		r.skipping = i == len(r.in) && !final
		if r.skipping {
			r.in = r.in[:0]
			return
		}
	}
	cut := len(data)
	if !final {
		// Everything up to the last byte that cannot be part of a key is
		// decided; what follows may be the start of a key.
		cut = 0
		for i := len(data) - 1; i >= 0; i-- {
			if !r.s.class[data[i]] {
				cut = i + 1
				break
			}
		}
	}
	r.out = append(r.out, r.s.Redact(data[:cut])...)
	rest := data[cut:]
	if len(rest) > r.s.runLimit {
		// Already longer than Redact examines: left as it is, whatever
		// follows.
		r.out = append(r.out, rest...)
		rest = rest[:0]
		r.skipping = true
	}
	r.in = append(r.in[:0], rest...)
}

func (r *redactReader) Close() error { return r.src.Close() }
