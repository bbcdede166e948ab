package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// keySet is the pool's keys in a form that finds them in error bodies,
// with the key list it was built from. It is rebuilt when the key list
// changes (reload, reset): the list is replaced whole then, so its first
// element's address and its length identify it.
type keySet struct {
	first **keymanager.Key
	n     int
	set   *secret.Set
}

// redactor keeps the current keySet. It is safe for concurrent use.
type redactor struct {
	keys *keymanager.Manager
	cur  atomic.Pointer[keySet]
	mu   sync.Mutex // one rebuild at a time
}

func newRedactor(keys *keymanager.Manager) *redactor {
	r := &redactor{keys: keys}
	r.set()
	return r
}

// set returns the set for the current key list, building it if the list
// changed since. Building costs about 0.1 s per million keys; Refresh does
// it ahead of the first error body after a reload.
func (r *redactor) set() *secret.Set {
	all := r.keys.Keys()
	first := unsafe.SliceData(all)
	if ks := r.cur.Load(); ks != nil && ks.first == first && ks.n == len(all) {
		return ks.set
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ks := r.cur.Load(); ks != nil && ks.first == first && ks.n == len(all) {
		return ks.set
	}
	raw := make([]string, len(all))
	for i, k := range all {
		raw[i] = k.Secret().Reveal()
	}
	ks := &keySet{first: first, n: len(all), set: secret.NewSet(raw)}
	r.cur.Store(ks)
	return ks.set
}

// KeysChanged rebuilds the set of keys that error bodies are searched for;
// call it after a reload or reset so that no request pays for it.
func (p *Proxy) KeysChanged() { p.redact.set() }

// maxDecoded bounds how much of a compressed error body is decoded to
// look into it: a small gzip can expand enormously.
const maxDecoded = 1 << 20

// readErrorBody reads the start of an error answer (status >= 400) for
// classification and masks any pool key quoted in it (docs/key-health.md,
// "Retries"), so that neither the client nor the logs nor Redis see one.
// It returns the start in plain text, masked, for classification and logs;
// nil when it cannot be decoded (then the answer is classified by status
// alone).
//
// A body that fits in errorPeek is read whole: the upstream connection is
// released, and the body, masked if it quoted a key, is kept in memory
// with its Content-Length set. A larger body streams through a masking
// reader without a Content-Length. Either way the response can be held
// while other attempts run and given to the client later, whatever its
// size.
func (p *Proxy) readErrorBody(resp *http.Response) []byte {
	set := p.redact.set()
	head, err := io.ReadAll(io.LimitReader(resp.Body, errorPeek+1))
	if err != nil || len(head) > errorPeek {
		// More than errorPeek, or an upstream that broke off: the client
		// gets what there is, then the same end.
		rest := io.MultiReader(bytes.NewReader(head), resp.Body)
		if isIdentity(resp.Header) {
			resp.Body = set.RedactReader(readCloser{rest, resp.Body})
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
		} else {
			// A compressed stream cannot be masked without decoding it
			// for the client; it passes unchanged.
			resp.Body = readCloser{rest, resp.Body}
		}
		return plainText(resp.Header, head, set)
	}
	resp.Body.Close() // read to the end: the connection is free again
	body := head
	plain := plainText(resp.Header, head, set)
	switch {
	case isIdentity(resp.Header):
		// Redact returns its input itself when there is nothing to mask.
		body = set.Redact(head)
	case plain != nil && !bytes.Equal(plain, decoded(resp.Header, head)):
		// A key was in the compressed body: the client gets the masked
		// plain text (identity is always an acceptable encoding).
		body = plain
		resp.Header.Del("Content-Encoding")
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if unsafe.SliceData(body) != unsafe.SliceData(head) {
		// Changed: the length the upstream declared no longer holds. An
		// unchanged body keeps the upstream's framing (a HEAD answer's
		// Content-Length describes a body that is not there).
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return plain
}

// plainText is body decoded (gzip) and masked; nil when the encoding is
// one the proxy cannot read.
func plainText(h http.Header, body []byte, set *secret.Set) []byte {
	d := decoded(h, body)
	if d == nil {
		return nil
	}
	return set.Redact(d)
}

// decoded is body without its content encoding, or nil when that encoding
// is unknown or broken. A truncated gzip gives what could be decoded.
func decoded(h http.Header, body []byte) []byte {
	if isIdentity(h) {
		return body
	}
	if !isGzip(h) {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	plain, _ := io.ReadAll(io.LimitReader(zr, maxDecoded))
	return plain
}

func isIdentity(h http.Header) bool {
	ce := h.Values("Content-Encoding")
	return len(ce) == 0 || len(ce) == 1 && (ce[0] == "" || ce[0] == "identity")
}

func isGzip(h http.Header) bool {
	ce := h.Values("Content-Encoding")
	return len(ce) == 1 && (ce[0] == "gzip" || ce[0] == "x-gzip")
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
