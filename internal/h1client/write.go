package h1client

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
)

// wantsClose reports whether req asks for its connection to close after
// it: Close set, or "close" among its Connection header's tokens (the
// header itself is hop-by-hop and not sent as is).
func wantsClose(req *http.Request) bool {
	if req.Close {
		return true
	}
	for _, v := range req.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}

// writers are request write buffers, taken for the write alone: an open
// stream keeps none.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// writeRequest writes req's request line, headers and body to nc, with
// Connection: close when closing, and closes req.Body.
func writeRequest(nc net.Conn, req *http.Request, closing bool, trace *httptrace.ClientTrace) (err error) {
	defer closeBody(req)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if err := validValue(host); err != nil {
		return err
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	hasBody := req.Body != nil && req.Body != http.NoBody
	chunked := false
	switch {
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if closing {
		bw.WriteString("Connection: close\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "User-Agent":
			// An empty User-Agent means none (ReverseProxy sets it so
			// that no default is sent).
			if len(vv) == 0 || vv[0] == "" {
				continue
			}
		}
		if !validName(k) {
			return fmt.Errorf("h1client: invalid header name %q", k)
		}
		for _, v := range vv {
			if err := validValue(v); err != nil {
				return fmt.Errorf("h1client: header %s: %w", k, err)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	if trace != nil && trace.WroteHeaders != nil {
		trace.WroteHeaders()
	}
	if hasBody {
		if chunked {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, req.Body); err != nil {
				return err
			}
			if err := cw.Close(); err != nil {
				return err
			}
			if _, err := bw.WriteString("\r\n"); err != nil {
				return err
			}
		} else if err := writeBody(bw, nc, req.Body, req.ContentLength); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeBody writes exactly n bytes of body after the headers in bw, and
// fails if body has fewer or more: never a byte past the length the
// headers announced, which the upstream would read as a request of its
// own. A body that fits in bw's free space, with a byte to spare for the
// check that nothing follows it, is read straight into it (no
// allocation); a larger one goes to the connection after the headers,
// through a LimitedReader, so that a file is sent by sendfile and a
// buffer by large writes.
func writeBody(bw *bufio.Writer, nc net.Conn, body io.Reader, n int64) error {
	var got int64
	var err error
	var extra []byte // room for the byte that must not be there
	if n < int64(bw.Available()) {
		buf := bw.AvailableBuffer()[:n+1]
		var k int
		k, err = io.ReadFull(body, buf[:n])
		got = int64(k)
		extra = buf[n:]
		bw.Write(buf[:k])
	} else {
		if err = bw.Flush(); err != nil {
			return err
		}
		lr := &io.LimitedReader{R: body, N: n}
		got, err = io.Copy(nc, lr)
		extra = make([]byte, 1)
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err != nil {
		return err
	}
	if got < n {
		return fmt.Errorf("h1client: request body has %d bytes, Content-Length says %d", got, n)
	}
	if k, _ := body.Read(extra); k > 0 {
		return fmt.Errorf("h1client: request body is longer than its Content-Length, %d", n)
	}
	return nil
}

// validName reports whether k is a header field name (an RFC 9110 token).
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

// validValue refuses what would end or break a header line: CR, LF, NUL
// and other controls but tab.
func validValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("invalid byte %#x in header value", c)
		}
	}
	return nil
}

var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
