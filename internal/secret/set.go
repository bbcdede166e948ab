package secret

import (
	"hash/maphash"
	"io"
	"math/bits"
	"slices"
	"unsafe"
)

// Set holds a pool of raw keys in a form that finds them in text wherever
// their bytes appear, whatever surrounds them: after an escape (\u0027,
// \n, %3D), inside quotes, glued to letters or digits.
//
// Every position of the text is a place where a key could end. A rolling
// hash of the last few bytes (the keys' shortest length, at most
// windowMax) is kept as the text is read, one multiply per byte, and
// looked up in a small Bloom filter of the keys' endings: one memory read
// per byte, whatever the pool's size. Only where the filter says some key
// may end there (about one position in two hundred, and the true ends) is
// each key length tried: a hash of that many bytes and a binary search in
// the sorted hashes of the keys. The set keeps about 12 bytes per key and
// no copy of any key. A Set is immutable and safe for concurrent use.
type Set struct {
	seed   maphash.Seed
	hashes []uint64 // maphash of every key, sorted
	// lens are the keys' distinct lengths, longest first: where two keys
	// end at the same place, the longer one is masked.
	lens           []int
	minLen, maxLen int

	// The rolling hash of the last w bytes is Σ b[i]·base^(w-1-i), modulo
	// 2⁶⁴; pow is base^w, to take the oldest byte out.
	w         int
	base, pow uint64
	// filter is a blocked Bloom filter of the rolling hashes of the keys'
	// last w bytes: one 64-bit word per lookup, two bits per key.
	filter []uint64
	shift  uint // word index = mixed hash >> shift
	// ends marks the bytes some key ends with, and inKey the bytes some
	// key holds: a key cannot span a byte outside inKey.
	ends, inKey [256]bool
}

// windowMax bounds the rolling window: longer gains nothing once the
// window's bytes are random.
const windowMax = 32

// filterBitsPerKey sizes the Bloom filter: 32 bits per key (4 MiB for a
// million keys) gives about 0.5 % false hits with two bits in one word.
const filterBitsPerKey = 32

// NewSet builds the set of keys. Empty keys are ignored.
func NewSet(keys []string) *Set {
	s := &Set{seed: maphash.MakeSeed(), hashes: make([]uint64, 0, len(keys)), minLen: -1}
	for _, k := range keys {
		if k == "" {
			continue
		}
		s.hashes = append(s.hashes, maphash.String(s.seed, k))
		if s.minLen < 0 || len(k) < s.minLen {
			s.minLen = len(k)
		}
		s.maxLen = max(s.maxLen, len(k))
		if !slices.Contains(s.lens, len(k)) {
			s.lens = append(s.lens, len(k))
		}
		for i := 0; i < len(k); i++ {
			s.inKey[k[i]] = true
		}
		s.ends[k[len(k)-1]] = true
	}
	if len(s.hashes) == 0 {
		return s
	}
	slices.Sort(s.hashes)
	slices.SortFunc(s.lens, func(a, b int) int { return b - a })

	s.w = min(s.minLen, windowMax)
	s.base = maphash.String(s.seed, "rolling base") | 1 // odd: invertible
	s.pow = 1
	for range s.w {
		s.pow *= s.base
	}
	words := max(1, len(s.hashes)*filterBitsPerKey/64)
	lg := bits.Len(uint(words - 1)) // words rounded up to a power of two
	s.filter = make([]uint64, 1<<lg)
	s.shift = uint(64 - lg)
	for _, k := range keys {
		if k == "" {
			continue
		}
		var h uint64
		for i := len(k) - s.w; i < len(k); i++ {
			h = h*s.base + uint64(k[i])
		}
		word, mask := s.slot(h)
		s.filter[word] |= mask
	}
	return s
}

// slot spreads a rolling hash (whose low bits depend only on the low bits
// of the bytes) over the filter: a word and two bits in it.
func (s *Set) slot(h uint64) (word uint64, mask uint64) {
	h ^= h >> 31
	h *= 0x9e3779b97f4a7c15
	h ^= h >> 29
	// A shift by 64 (a one-word filter) is 0 in Go.
	return h >> s.shift, 1<<(h&63) | 1<<((h>>6)&63)
}

// Len is the number of keys in the set.
func (s *Set) Len() int { return len(s.hashes) }

// MinLen is the length of the shortest key; text shorter than it holds
// none. 0 for an empty set.
func (s *Set) MinLen() int { return max(s.minLen, 0) }

// contains reports whether tok is one of the keys. Two different strings
// may share a hash; a token mistaken for a key is masked needlessly, which
// is harmless.
func (s *Set) contains(tok []byte) bool {
	_, ok := slices.BinarySearch(s.hashes, maphash.Bytes(s.seed, tok))
	return ok
}

// scan calls found(start, end) for every key of the set that is b[start:end]
// with end >= from, in order of end, and for one end the longest first.
func (s *Set) scan(b []byte, from int, found func(start, end int)) {
	w := s.w
	if len(s.hashes) == 0 || len(b) < w {
		return
	}
	e := max(from, w)
	if e > len(b) {
		return
	}
	// Locals: the loop runs once per byte of every error body.
	base, pow, filter, ends := s.base, s.pow, s.filter, &s.ends
	var h uint64
	for i := e - w; i < e; i++ {
		h = h*base + uint64(b[i])
	}
	for {
		if ends[b[e-1]] {
			if word, mask := s.slot(h); filter[word]&mask == mask {
				for _, n := range s.lens {
					if n <= e && s.contains(b[e-n:e]) {
						found(e-n, e)
					}
				}
			}
		}
		if e == len(b) {
			return
		}
		h = h*base + uint64(b[e]) - uint64(b[e-w])*pow
		e++
	}
}

// Redact returns b with every key of the set that appears in it replaced
// by its Mask, wherever its bytes are. Keys that overlap are each masked,
// in the order they end: a key that starts inside one already masked is
// masked in full after it. Without a key, b itself is returned, unchanged
// and without allocation. b is only read.
func (s *Set) Redact(b []byte) []byte {
	if s == nil || len(s.hashes) == 0 {
		return b
	}
	var out []byte
	last := 0 // end of the part of b already copied to out
	s.scan(b, 0, func(start, end int) {
		if end <= last {
			return // inside a key masked already
		}
		if out == nil {
			out = make([]byte, 0, len(b))
		}
		if start > last {
			out = append(out, b[last:start]...)
		}
		out = AppendMask(out, string(b[start:end]))
		last = end
	})
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// RedactString is Redact for a string: v itself when it holds no key.
func (s *Set) RedactString(v string) string {
	if s == nil || len(v) < s.MinLen() || len(s.hashes) == 0 {
		return v
	}
	// Redact only reads its input and returns it as it is when it holds
	// no key: no copy of v is needed to look.
	b := unsafe.Slice(unsafe.StringData(v), len(v))
	r := s.Redact(b)
	if len(r) == len(b) && unsafe.SliceData(r) == unsafe.SliceData(b) {
		return v
	}
	return string(r)
}

// RedactReader returns a reader of r's bytes with the set's keys masked as
// Redact would mask them in the whole stream, however r splits it. It
// holds back no more than the longest key's length less one byte, and
// nothing past the last byte no key holds (an event's closing newline, a
// space), so an event stream is not delayed. Its memory is bounded by the
// longest key and its read size, whatever the stream's length. Closing it
// closes r.
func (s *Set) RedactReader(r io.ReadCloser) io.ReadCloser {
	return &redactReader{s: s, src: r}
}

type redactReader struct {
	s   *Set
	src io.ReadCloser
	// buf holds the stream's last bytes: those not yet passed on, and at
	// most maxLen-1 before them that a key ending later could start in.
	buf []byte
	// passed: buf[:passed] went to out (or its key's mask did); scanned:
	// every key ending in buf[:scanned] was handled.
	passed, scanned int
	out             []byte // ready for Read
	obuf            []byte // out's storage, reused for every chunk
	chunk           []byte
	err             error
}

// readChunk is the size of each read from the source.
const readChunk = 16 << 10

func (r *redactReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.chunk == nil {
			r.chunk = make([]byte, readChunk)
		}
		n, err := r.src.Read(r.chunk)
		r.buf = append(r.buf, r.chunk[:n]...)
		if err != nil {
			r.err = err
		}
		r.process(err != nil)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// process masks the keys that end in the new bytes and passes on what no
// later key can reach; final: no more input.
func (r *redactReader) process(final bool) {
	s, b := r.s, r.buf
	out := r.obuf[:0]
	defer func() { r.obuf, r.out = out, out }()
	s.scan(b, r.scanned+1, func(start, end int) {
		if end <= r.passed {
			return
		}
		if start > r.passed {
			out = append(out, b[r.passed:start]...)
		}
		out = AppendMask(out, string(b[start:end]))
		r.passed = end
	})
	r.scanned = len(b)
	// A key that ends later starts after len(b)-maxLen, and after the
	// last byte no key holds.
	cut := len(b)
	keep := max(0, len(b)-(s.maxLen-1))
	if !final && len(s.hashes) > 0 {
		cut = keep
		for i := len(b) - 1; i >= cut; i-- {
			if !s.inKey[b[i]] {
				cut = i + 1
				break
			}
		}
	}
	if cut > r.passed {
		out = append(out, b[r.passed:cut]...)
		r.passed = cut
	}
	// Keep what a later key may start in, and what is not passed on yet.
	drop := min(keep, r.passed)
	if drop > 0 {
		n := copy(r.buf, b[drop:])
		r.buf = r.buf[:n]
		r.passed -= drop
		r.scanned -= drop
	}
}

func (r *redactReader) Close() error { return r.src.Close() }
