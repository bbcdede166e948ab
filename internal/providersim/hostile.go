package providersim

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// TraceHeader is a request header the simulator ignores but hands to
// SetTrace's function with the rest: a runner sets it to tell which of
// its requests an attempt belongs to (gpt-load passes headers on).
const TraceHeader = "X-Chaos-Request"

// Attempt is one work request as the simulator met it, for SetTrace.
type Attempt struct {
	// Header is the request's header, valid during the call only.
	Header http.Header
	Target int
	// Fault is the target's fault mode when the request arrived.
	Fault Fault
	At    time.Time
}

// SetTrace has f called as every work request (chat completions,
// transcriptions) arrives, with the fault mode it is about to meet, from
// the handler's goroutine (at the start, so that a stall that outlasts
// the caller's interest is reported too); nil stops it. f must be safe
// for concurrent use.
func (s *Sim) SetTrace(f func(Attempt)) {
	if f == nil {
		s.trace.Store(nil)
		return
	}
	s.trace.Store(&f)
}

// mix spreads a serial number's bits, so that choices made from different
// bits of it do not follow one another.
func mix(n uint64) uint64 { return n * 0x9e3779b97f4a7c15 }

// InFlight is the number of work requests being answered now.
func (s *Sim) InFlight() int64 { return s.inFlight.Load() }

// echoWriter is FaultEchoKey's answer: it adds headers echoing key to
// every answer, and holds an error answer's body (status >= 400) until
// finish, which quotes the key in it, compresses it and sends it.
type echoWriter struct {
	http.ResponseWriter
	key    string
	n      uint64 // mixed from the answer's serial number: picks the coding and the padding
	gzipOK bool   // the request's Accept-Encoding names gzip
	status int
	buf    bytes.Buffer
}

func (e *echoWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

func (e *echoWriter) WriteHeader(code int) {
	if e.status != 0 {
		return
	}
	e.status = code
	h := e.Header()
	h.Set("X-Api-Key", e.key)
	h.Set("Location", "https://api.example.com/v1/retry?key="+e.key)
	h.Set("WWW-Authenticate", `Bearer realm="`+e.key+`"`)
	if code < 400 {
		e.ResponseWriter.WriteHeader(code)
	}
}

func (e *echoWriter) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.status >= 400 {
		return e.buf.Write(b)
	}
	return e.ResponseWriter.Write(b)
}

// finish sends a held error answer: the body quoting the key, padded
// past 64 KiB compressed one time in three, in the coding the serial
// number picks whatever the request accepted.
func (e *echoWriter) finish() {
	if e.status < 400 {
		return
	}
	body := quoteKey(e.buf.Bytes(), e.key, e.n>>48%3 == 0)
	coding := []string{"gzip", "GZIP", "deflate", "deflate-raw", "", "deflate"}[e.n>>40%6]
	if e.n>>40%6 == 5 && e.gzipOK {
		coding = "gzip"
	}
	body, coding = compress(body, coding)
	h := e.Header()
	if coding != "" {
		h.Set("Content-Encoding", coding)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	e.ResponseWriter.WriteHeader(e.status)
	e.ResponseWriter.Write(body)
}

// quoteKey adds key to an error body: in a JSON object, a member quoting
// it after a JSON \u0027 and \n and after %3D (escapes a masker that
// looks for the key alone between delimiters misses), after a padding of
// 128 KiB that compresses poorly when pad; in any other body, a comment
// at the end.
func quoteKey(body []byte, key string, pad bool) []byte {
	b := bytes.TrimSpace(body)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return append(bytes.Clone(body), "\n<!-- sent with key="+key+" -->\n"...)
	}
	var out bytes.Buffer
	out.Write(b[:len(b)-1])
	if pad {
		rng := rand.New(rand.NewPCG(uint64(len(key)), 1))
		raw := make([]byte, 96<<10)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		out.WriteString(`,"pad":"`)
		out.WriteString(base64.StdEncoding.EncodeToString(raw))
		out.WriteString(`"`)
	}
	out.WriteString(`,"key_hint":"\u0027` + key + `\u0027 sent as\n` + key + `, or as auth%3D` + key + `"}`)
	return out.Bytes()
}

// compress codes body: "gzip" or "GZIP" (gzip), "deflate" (zlib, as RFC
// 9110 defines it), "deflate-raw" (a raw deflate stream, labelled
// deflate, as some servers send it); "" leaves it plain. It returns the
// coded body and the Content-Encoding to send.
func compress(body []byte, coding string) ([]byte, string) {
	var out bytes.Buffer
	switch coding {
	case "gzip", "GZIP":
		zw := gzip.NewWriter(&out)
		zw.Write(body)
		zw.Close()
	case "deflate":
		zw := zlib.NewWriter(&out)
		zw.Write(body)
		zw.Close()
	case "deflate-raw":
		zw, _ := flate.NewWriter(&out, flate.DefaultCompression)
		zw.Write(body)
		zw.Close()
		coding = "deflate"
	default:
		return body, ""
	}
	return out.Bytes(), coding
}
