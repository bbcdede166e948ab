package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Answer is what the client saw of one request.
type Answer struct {
	Request
	Start, End time.Duration // from the start of traffic
	Status     int           // 0: no answer
	Body       []byte        // the first 4 KiB
	Err        string        // a transport error, or the body cut short
	Hung       bool          // still open at the client's deadline
	Bound      time.Duration // that deadline
}

const keepBody = 4 << 10

// send performs r against base (gpt-load) within bound and reports what
// came back.
func send(ctx context.Context, c *http.Client, base, addr string, r Request, bound time.Duration) Answer {
	a := Answer{Request: r, Bound: bound}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	switch r.Kind {
	case Oversized, OversizedCh, StalledBody:
		rawRequest(ctx, addr, r, &a)
	default:
		httpRequest(ctx, c, base, r, &a)
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		a.Hung = true
	}
	return a
}

func chatBody(model, content string, stream bool) string {
	return `{"model":` + strconv.Quote(model) + `,"stream":` + strconv.FormatBool(stream) +
		`,"messages":[{"role":"user","content":` + content + `}]}`
}

// httpRequest sends the requests an ordinary HTTP client can send.
func httpRequest(ctx context.Context, c *http.Client, base string, r Request, a *Answer) {
	path, ctype := "/v1/chat/completions", "application/json"
	var body []byte
	switch r.Kind {
	case Chat, WrongPath:
		body = []byte(chatBody(r.Model, `"Say hello"`, false))
		if r.Kind == WrongPath {
			path = []string{"/v1/chat/completion", "/v1/chats/completions", "/v2/chat/completions"}[r.N%3]
		}
	case Stream, CancelStream:
		body = []byte(chatBody(r.Model, `"Say hello"`, true))
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
	rctx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		a.Err = err.Error()
		return
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		a.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	if r.Kind == CancelStream {
		// Leave after the first bytes, as a user closing the tab does.
		buf := make([]byte, 64)
		resp.Body.Read(buf)
		cancelStream()
		return
	}
	b, err := io.ReadAll(resp.Body)
	a.Body = b[:min(len(b), keepBody)]
	if err != nil {
		a.Err = "body: " + err.Error()
	}
}

// rawRequest speaks HTTP/1.1 on a connection of its own for the bodies an
// http.Client will not send: one that stops mid-way, one over the limit
// (declared, or chunked without end).
func rawRequest(ctx context.Context, addr string, r Request, a *Answer) {
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
		// 2 MiB declared over a 1 MiB limit: refused before it is sent.
		_, err = io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(2<<20)+"\r\n\r\n"+body[:10])
	case OversizedCh:
		// Chunks past the limit, written while the answer is read; the
		// server may stop reading at the limit, so errors are expected.
		_, err = io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n")
		go func() {
			chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("x", 64<<10))
			for range 24 { // 1.5 MiB
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
	a.Status = resp.StatusCode
	b, err := io.ReadAll(io.LimitReader(resp.Body, keepBody))
	a.Body = b
	if err != nil {
		a.Err = "body: " + err.Error()
	}
}
