package chaos

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// Answer is what the client saw of one request.
type Answer struct {
	Request
	Start, End time.Duration // from the start of traffic
	Status     int           // 0: no answer
	Header     http.Header   // the response's headers
	Body       []byte        // the first 4 KiB, decoded from gzip or deflate
	Err        string        // a transport error, or the body cut short
	Hung       bool          // still open at the client's deadline
	Bound      time.Duration // that deadline
	// Leaks are where a pool key was found in what the client received:
	// a header, or the body (as it came, and decoded from gzip or
	// deflate), each naming the key by its masked preview.
	Leaks []string
	// Faults are the fault modes of the targets each of the request's
	// upstream attempts met, as the simulator traced them.
	Faults []providersim.Fault
}

// keepBody is the start of a body an Answer keeps; keepCoded bounds the
// compressed body kept to decode it whole after the read (the rest is
// searched as it comes, undecoded).
const (
	keepBody  = 4 << 10
	keepCoded = 1 << 20
)

// send performs r against base (gpt-load) within bound and reports what
// came back; every byte received is searched for keys.
func send(ctx context.Context, c *http.Client, base, addr string, r Request, bound time.Duration, keys []string) Answer {
	a := Answer{Request: r, Bound: bound}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	sc := newLeakScanner(keys)
	switch r.Kind {
	case Oversized, OversizedCh, StalledBody:
		rawRequest(ctx, addr, r, &a, sc)
	default:
		httpRequest(ctx, c, base, r, &a, sc)
	}
	a.Leaks = sc.found
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		a.Hung = true
	}
	return a
}

func chatBody(model, content string, stream bool) string {
	return `{"model":` + strconv.Quote(model) + `,"stream":` + strconv.FormatBool(stream) +
		`,"messages":[{"role":"user","content":` + content + `}]}`
}

// acceptEncodings are the Accept-Encoding headers clients send, by
// request number: none, what browsers and SDKs send, codings gpt-load
// cannot read, a coding in capitals.
var acceptEncodings = []string{"", "gzip", "GZIP", "br", "zstd", "deflate", "gzip, deflate, br, zstd", "*", "identity"}

// padding is the filler of large bodies, shared read-only by every request.
var padding = sync.OnceValue(func() []byte { return bytes.Repeat([]byte("lorem ipsum "), maxLarge/12+1) })

// httpRequest sends the requests an ordinary HTTP client can send.
func httpRequest(ctx context.Context, c *http.Client, base string, r Request, a *Answer, sc *leakScanner) {
	path, ctype := "/v1/chat/completions", "application/json"
	var body []byte
	var reader io.Reader
	switch r.Kind {
	case Chat, WrongPath:
		body = []byte(chatBody(r.Model, `"Say hello"`, false))
		if r.Kind == WrongPath {
			path = []string{"/v1/chat/completion", "/v1/chats/completions", "/v2/chat/completions"}[r.N%3]
		}
	case Stream, CancelStream:
		body = []byte(chatBody(r.Model, `"Say hello"`, true))
	case LargeChat:
		// r.Size bytes in all, most of them filler in the message.
		head := `{"model":` + strconv.Quote(r.Model) + `,"stream":false,"messages":[{"role":"user","content":"`
		tail := `"}]}`
		n := max(r.Size-len(head)-len(tail), 0)
		reader = io.MultiReader(strings.NewReader(head), bytes.NewReader(padding()[:n]), strings.NewReader(tail))
		r.Size = len(head) + n + len(tail)
	case Flagged:
		body = []byte(chatBody(r.Model, `"You are FLAGGED worthless, say it back"`, false))
	case ForeignFile:
		body = []byte(chatBody(r.Model, `[{"type":"text","text":"Summarise this"},{"type":"file","file":{"file_id":"file-otherproj`+strconv.Itoa(r.N)+`"}}]`, r.N%2 == 0))
	case UnknownModel:
		body = []byte(chatBody(r.Model, `"Say hello"`, r.N%2 == 0))
	case BadJSON:
		body = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}`)
	case Transcription:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("model", r.Model)
		fw, _ := mw.CreateFormFile("file", "hello.wav")
		fw.Write(bytes.Repeat([]byte("RIFF\x00WAVE"), 200))
		mw.Close()
		path, ctype, body = "/v1/audio/transcriptions", mw.FormDataContentType(), buf.Bytes()
	}
	if reader == nil {
		reader = bytes.NewReader(body)
	}
	rctx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, base+path, reader)
	if err != nil {
		a.Err = err.Error()
		return
	}
	if r.Kind == LargeChat {
		req.ContentLength = int64(r.Size)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set(providersim.TraceHeader, strconv.Itoa(r.N))
	if ae := acceptEncodings[r.N%len(acceptEncodings)]; ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	resp, err := c.Do(req)
	if err != nil {
		a.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	receive(resp, a, sc, r.Kind == CancelStream, cancelStream)
}

// receive reads resp into a: its status and headers, and its body, every
// byte searched by sc; with leave, only the first bytes, then cancel (a
// user closing the tab).
func receive(resp *http.Response, a *Answer, sc *leakScanner, leave bool, cancel func()) {
	a.Status = resp.StatusCode
	a.Header = resp.Header
	sc.header(resp.Header)
	if leave {
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		sc.body(buf[:n])
		a.Body = buf[:n]
		cancel()
		return
	}
	coded := codingOf(resp.Header)
	var kept []byte // the body's start: keepBody bytes, or keepCoded when coded
	limit := keepBody
	if coded != "" || resp.StatusCode >= 400 {
		limit = keepCoded // an error body is judged whole (see shortJSON)
	}
	buf := make([]byte, 32<<10)
	var err error
	for {
		var n int
		n, err = resp.Body.Read(buf)
		sc.body(buf[:n])
		if room := limit - len(kept); room > 0 {
			kept = append(kept, buf[:min(n, room)]...)
		}
		if err != nil {
			break
		}
	}
	if err != io.EOF {
		a.Err = "body: " + err.Error()
	}
	a.Body = kept
	if coded != "" {
		if plain, derr := decode(coded, kept); derr == nil {
			sc.decoded(plain)
			a.Body = plain
		}
	}
	if len(a.Body) > keepBody {
		a.Body = shortJSON(a.Body)
	}
	// A copy: the buffer read into may be up to keepCoded long, and a
	// decoded body longer still; the run keeps every answer until (h) is
	// read.
	a.Body = bytes.Clone(a.Body[:min(len(a.Body), keepBody)])
}

// shortJSON is a JSON object b without its members over 1 KiB (an
// upstream's padding), so that its start still parses as the error it
// is; b itself when it is no JSON object.
func shortJSON(b []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	for k, v := range m {
		if len(v) > 1<<10 {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// codingOf is "gzip" or "deflate" when the body says it is coded so,
// in any case; "" otherwise.
func codingOf(h http.Header) string {
	switch ce := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); ce {
	case "gzip", "x-gzip":
		return "gzip"
	case "deflate":
		return ce
	}
	return ""
}

// decode decodes b from gzip or deflate (zlib, or raw as some servers
// send it), at most 16 MiB of it.
func decode(coding string, b []byte) ([]byte, error) {
	var r io.Reader
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = zr
	default:
		if zr, err := zlib.NewReader(bytes.NewReader(b)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(b))
		}
	}
	out, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if len(out) > 0 {
		return out, nil // what decoded before a break is searched too
	}
	return out, err
}

// leakScanner searches what a client receives for the pool's keys, as
// raw bytes, across the boundaries of the reads.
type leakScanner struct {
	keys  []string
	tail  []byte // the body's last bytes, shorter than the longest key
	max   int    // the longest key's length
	off   int64  // bytes of body searched so far
	found []string
}

func newLeakScanner(keys []string) *leakScanner {
	sc := &leakScanner{keys: keys}
	for _, k := range keys {
		sc.max = max(sc.max, len(k))
	}
	return sc
}

func (sc *leakScanner) header(h http.Header) {
	for name, vs := range h {
		for _, v := range vs {
			for _, k := range sc.keys {
				if strings.Contains(v, k) || strings.Contains(name, k) {
					sc.found = append(sc.found, fmt.Sprintf("header %s: key %s", name, secret.Mask(k)))
				}
			}
		}
	}
}

// body searches the next bytes of the body as it came.
func (sc *leakScanner) body(b []byte) {
	if len(b) == 0 || sc.max == 0 {
		return
	}
	win := append(sc.tail, b...)
	start := sc.off - int64(len(sc.tail))
	for _, k := range sc.keys {
		for i := 0; ; {
			j := bytes.Index(win[i:], []byte(k))
			if j < 0 {
				break
			}
			at := i + j
			if at+len(k) > len(sc.tail) { // not found already in an earlier window
				sc.found = append(sc.found, fmt.Sprintf("body byte %d: key %s", start+int64(at), secret.Mask(k)))
			}
			i = at + 1
		}
	}
	sc.off += int64(len(b))
	keep := min(len(win), sc.max-1)
	sc.tail = append(sc.tail[:0:0], win[len(win)-keep:]...)
}

// decoded searches a body decoded from its Content-Encoding.
func (sc *leakScanner) decoded(plain []byte) {
	for _, k := range sc.keys {
		if i := bytes.Index(plain, []byte(k)); i >= 0 {
			sc.found = append(sc.found, fmt.Sprintf("body decoded, byte %d: key %s", i, secret.Mask(k)))
		}
	}
}

// rawRequest speaks HTTP/1.1 on a connection of its own for the bodies an
// http.Client will not send: one that stops mid-way, one over the limit
// (declared, or chunked without end).
func rawRequest(ctx context.Context, addr string, r Request, a *Answer, sc *leakScanner) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		a.Err = err.Error()
		return
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n"
	body := chatBody(r.Model, `"Say hello"`, false)
	switch r.Kind {
	case StalledBody:
		// A declared length, half of it sent, then nothing.
		_, err = io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body[:len(body)/2])
	case Oversized:
		// Twice the limit declared: refused before it is sent.
		_, err = io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(2*maxBodyMiB<<20)+"\r\n\r\n"+body[:10])
	case OversizedCh:
		// Chunks past the limit, written while the answer is read; the
		// server may stop reading at the limit, so errors are expected.
		_, err = io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n")
		go func() {
			chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("x", 64<<10))
			for range maxBodyMiB*16 + 8 { // half a MiB past the limit
				if _, err := io.WriteString(conn, chunk); err != nil {
					return
				}
			}
			io.WriteString(conn, "0\r\n\r\n")
		}()
	}
	if err != nil {
		a.Err = "writing: " + err.Error()
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		a.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	receive(resp, a, sc, false, nil)
}
