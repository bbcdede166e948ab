package proxy

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
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
// KeySource lists the keys answers are searched for: a proxy's own keys,
// or every group's (Options.RedactKeys). Keys must return the same slice
// until the keys change.
type KeySource interface {
	Keys() []*keymanager.Key
	Len() int
}

type redactor struct {
	keys KeySource
	cur  atomic.Pointer[keySet]
	mu   sync.Mutex // one rebuild at a time
}

func newRedactor(keys KeySource) *redactor {
	r := &redactor{keys: keys}
	if keys.Len() > asyncSetKeys {
		// A large pool's set is built while the server starts listening
		// (about 0.2 s per million keys: /health answers meanwhile); an
		// answer that comes first waits for it in set, so none is missed.
		r.mu.Lock()
		go func() {
			defer r.mu.Unlock()
			r.build()
		}()
		return r
	}
	r.set()
	return r
}

// asyncSetKeys is the pool size above which the first key set is built in
// the background.
const asyncSetKeys = 100_000

// set returns the set for the current key list, building it if the list
// changed since. Building costs about 0.2 s and 12 MB per million keys;
// KeysChanged does it right after a reload, and answers that arrive
// meanwhile wait for it (their headers are searched): a key just added is
// never missed.
func (r *redactor) set() *secret.Set {
	all := r.keys.Keys()
	first := unsafe.SliceData(all)
	if ks := r.cur.Load(); ks != nil && ks.first == first && ks.n == len(all) {
		return ks.set
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.build()
}

// build makes the set for the current key list unless it exists. Caller
// holds r.mu.
func (r *redactor) build() *secret.Set {
	all := r.keys.Keys()
	first := unsafe.SliceData(all)
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

// KeysChanged rebuilds the set of keys that answers are searched for; call
// it after a reload or reset so that no request pays for it.
func (p *Proxy) KeysChanged() { p.redact.set() }

// maxDecoded bounds how much of a compressed error body is decoded in
// memory, to classify it and to mask it whole: a small gzip can expand
// enormously. A body that decodes to more streams through the masking
// reader instead.
const maxDecoded = 1 << 20

// readErrorBody reads the start of an error answer (status >= 400) for
// classification and masks every pool key in it, wherever its bytes are
// (docs/api.md, "Errors"), so that neither the client nor the logs nor
// Redis see one. It returns the start in plain text, masked, for
// classification and logs; nil when it cannot be decoded (then the answer
// is classified by status alone).
//
// A body that fits in errorPeek is read whole: the upstream connection is
// released, and the body, masked if it held a key, is kept in memory with
// its Content-Length set. A larger body, or a gzip one that decodes to
// more than maxDecoded, streams through a masking reader without a
// Content-Length. Either way the response can be held while other
// attempts run and given to the client later, whatever its size.
//
// A gzip body is searched decoded; one that held a key reaches the client
// as masked plain text, without Content-Encoding (identity is always
// acceptable), and so does every gzip body too large to hold. A body in a
// coding the proxy does not decode (the upstream was not asked for one,
// see upstreamAcceptEncoding) is searched as it is.
func (p *Proxy) readErrorBody(resp *http.Response) []byte {
	set := p.redact.set()
	enc := encodingOf(resp.Header)
	head, err := io.ReadAll(io.LimitReader(resp.Body, errorPeek+1))
	plain, state := decoded(enc, head)
	masked := set.Redact(plain)
	if err != nil || len(head) > errorPeek {
		// More than errorPeek, or an upstream that broke off: the client
		// gets what there is, then the same end.
		rest := readCloser{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
		if state == undecodable || state == broken && sameBytes(masked, plain) {
			// Searched as its bytes are: decoding it would only end the
			// client's connection where the coding breaks, and what
			// decodes before that holds no key.
			enc = encIdentity
		}
		maskStream(resp, rest, enc, set)
		return masked
	}
	resp.Body.Close() // read to the end: the connection is free again
	if state == tooLarge {
		maskStream(resp, io.NopCloser(bytes.NewReader(head)), enc, set)
		return masked
	}
	body := head
	switch {
	case enc == encIdentity:
		// Redact returns its input itself when there is nothing to mask.
		body = masked
	case plain != nil && !sameBytes(masked, plain):
		// A key was in the compressed body: the client gets the masked
		// plain text.
		body = masked
		resp.Header.Del("Content-Encoding")
	default:
		// Nothing found decoded, or a coding the proxy cannot read: the
		// bytes as they came, searched as they are (a body that only
		// claims a coding, or a broken one, may hold a key in clear).
		body = set.Redact(head)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if !sameBytes(body, head) {
		// Changed: the length the upstream declared no longer holds. An
		// unchanged body keeps the upstream's framing (a HEAD answer's
		// Content-Length describes a body that is not there).
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return masked
}

// maskStream makes resp's body src read through the masking reader,
// decoded first when enc is gzip or deflate (the client then gets plain
// text). The length is unknown until the end: Content-Length goes. Memory
// stays bounded whatever the body's size: the decoder's window, a read
// buffer, and the longest key's length held back.
func maskStream(resp *http.Response, src io.ReadCloser, enc contentEncoding, set *secret.Set) {
	body := src
	if enc == encGzip || enc == encDeflate {
		// The head was checked to start as enc says: the decoder's header
		// is read from bytes in hand.
		if zr, err := decoder(enc, src); err == nil {
			body = readCloser{zr, src}
			resp.Header.Del("Content-Encoding")
		}
	}
	resp.Body = set.RedactReader(body)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
}

// sameBytes reports whether a and b are the same slice (Redact returns its
// input itself when it changes nothing).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// decodeState says how decoding a body's start went.
type decodeState uint8

const (
	decodedWhole decodeState = iota // all of it (a truncated stream: all there is)
	broken                          // corrupt: plain is what decodes before that
	tooLarge                        // more than maxDecoded: plain is its start
	undecodable                     // not what it claims; or a coding not decoded here
)

// decoded is body without its content encoding (at most maxDecoded bytes
// of it), or nil when that coding is not decoded here or the body does not
// start as it claims. A truncated or broken stream gives what could be
// decoded.
func decoded(enc contentEncoding, body []byte) ([]byte, decodeState) {
	switch enc {
	case encIdentity:
		return body, decodedWhole
	case encGzip, encDeflate:
		zr, err := decoder(enc, bytes.NewReader(body))
		if err != nil {
			return nil, undecodable
		}
		plain, err := io.ReadAll(io.LimitReader(zr, maxDecoded+1))
		switch {
		case len(plain) > maxDecoded:
			return plain[:maxDecoded], tooLarge
		case err == nil || err == io.ErrUnexpectedEOF:
			return plain, decodedWhole
		case len(plain) == 0:
			// Nothing but an error: not deflate at all (raw deflate has no
			// header to tell it by).
			return nil, undecodable
		}
		return plain, broken
	}
	return nil, undecodable
}

// decoder reads r decoded from enc, gzip or deflate; an error when r does
// not start as enc says. Deflate is zlib-wrapped (RFC 9110, section
// 8.4.1.2) or, as some servers send it, raw: the first two bytes tell.
func decoder(enc contentEncoding, r io.Reader) (io.Reader, error) {
	if enc == encGzip {
		return gzip.NewReader(r)
	}
	br := bufio.NewReaderSize(r, 16)
	if h, err := br.Peek(2); err == nil && isZlibHeader(h[0], h[1]) {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// isZlibHeader reports whether cmf and flg start a zlib stream (RFC 1950):
// method 8 (deflate), a window of at most 32 KiB, and the check bits.
func isZlibHeader(cmf, flg byte) bool {
	return cmf&0x0f == 8 && cmf>>4 <= 7 && (uint16(cmf)<<8|uint16(flg))%31 == 0
}

// maskHeader masks every pool key in h's values, wherever its bytes are
// (Location: …?key=, WWW-Authenticate, an echoed X-Api-Key), and drops a
// header whose name holds one; any status, 2xx included (docs/api.md,
// "Errors"). Values shorter than the shortest key are not looked at: an
// ordinary answer's headers cost a length check each.
func maskHeader(set *secret.Set, h http.Header) {
	short := set.MinLen()
	if short == 0 {
		return
	}
	for name, vs := range h {
		if len(name) >= short && set.RedactString(name) != name {
			delete(h, name)
			continue
		}
		for i, v := range vs {
			if len(v) < short {
				continue
			}
			if m := set.RedactString(v); m != v {
				vs[i] = m
			}
		}
	}
}

// maskRedirectBody masks pool keys in the body of a 3xx answer, which
// often repeats where it points ("Found. Redirecting to …?key=…"). A 3xx is
// neither classified nor held, so its body is masked as it streams, with
// no read here; gzip and deflate are decoded for it (the client gets plain
// text, and a body that only claims the coding ends the client's
// connection early). Its length is unknown until the end: Content-Length
// goes.
func maskRedirectBody(resp *http.Response, set *secret.Set) {
	if resp.Body == nil || resp.Body == http.NoBody || set.Len() == 0 {
		return
	}
	body := resp.Body
	if enc := encodingOf(resp.Header); enc == encGzip || enc == encDeflate {
		body = &lazyDecoder{enc: enc, src: body}
		resp.Header.Del("Content-Encoding")
	}
	// Any other coding is searched as its bytes are.
	resp.Body = set.RedactReader(body)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
}

// lazyDecoder decodes src from its first Read, so that building it reads
// nothing.
type lazyDecoder struct {
	enc contentEncoding
	src io.ReadCloser
	r   io.Reader
	err error
}

func (d *lazyDecoder) Read(p []byte) (int, error) {
	if d.r == nil {
		if d.err != nil {
			return 0, d.err
		}
		if d.r, d.err = decoder(d.enc, d.src); d.err != nil {
			d.r = nil
			return 0, d.err
		}
	}
	return d.r.Read(p)
}

func (d *lazyDecoder) Close() error { return d.src.Close() }

// trailerMasker masks pool keys in the trailers of an answer (maskHeader):
// they arrive with the end of the body, after modifyResponse, and before
// ReverseProxy copies them to the client.
type trailerMasker struct {
	io.ReadCloser
	resp *http.Response
	p    *Proxy
}

func (t *trailerMasker) Read(b []byte) (int, error) {
	n, err := t.ReadCloser.Read(b)
	if err == io.EOF && len(t.resp.Trailer) > 0 {
		maskHeader(t.p.redact.set(), t.resp.Trailer)
	}
	return n, err
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
