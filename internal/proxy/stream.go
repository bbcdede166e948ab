package proxy

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/sse"
)

// The commit window's bounds (docs/api.md, "Streaming"): a stream is held
// until its first output, or this many bytes, or this long after its
// headers.
const (
	windowBytes       = 16 << 10
	defaultWindowTime = 10 * time.Second
	// windowRead is the least room a window read gets: the window reads
	// into the spare capacity of what it holds, which starts at 1 KiB (a
	// first event is a few hundred bytes) and doubles when it fills, so a
	// thousand streams opening at once do not each take a large buffer.
	windowRead = 512
	// keepaliveBuf is the read size of a stream read through the pump
	// after the commit, with keepalives on.
	keepaliveBuf = 4 << 10
)

var keepaliveComment = []byte(": keepalive\n\n")

// Reasons a committed stream ended as a failure, for the access line.
const (
	reasonStreamIdle   = "stream idle timeout"
	reasonStreamBroken = "upstream stream broken"
)

// errStreamIdle ends a committed stream that was silent longer than
// STREAM_IDLE_TIMEOUT. ReverseProxy then aborts the response, so the client
// sees the connection end without the final chunk.
var errStreamIdle = errors.New("stream idle timeout: the upstream sent nothing for STREAM_IDLE_TIMEOUT")

// idleError is the same silence inside the commit window, before anything
// reached the client. It is a timeout after the request was sent, which
// classify does not retry: the upstream may still be working on it.
type idleError struct{}

func (idleError) Error() string   { return "the upstream stream was silent for STREAM_IDLE_TIMEOUT" }
func (idleError) Timeout() bool   { return true }
func (idleError) Temporary() bool { return false }

// StreamObserver is told about event streams, for metrics. An
// Options.Observer that implements it gets these calls too. They are made
// on the request path: cheap, and safe for concurrent use.
type StreamObserver interface {
	// StreamFirstByte: a stream's headers and first bytes went to the
	// client this long after its request arrived.
	StreamFirstByte(d time.Duration)
	// StreamFirstToken: a stream's first output left this long after the
	// client's request arrived.
	StreamFirstToken(d time.Duration)
	// StreamFailover: a stream that failed inside the commit window was
	// retried on another key or target. reason is a classify.Fault name,
	// or "stream_reset" when the upstream broke the stream off.
	StreamFailover(reason string)
}

type nopStreamObserver struct{}

func (nopStreamObserver) StreamFirstByte(time.Duration)  {}
func (nopStreamObserver) StreamFirstToken(time.Duration) {}
func (nopStreamObserver) StreamFailover(string)          {}

// isEventStream reports whether resp is a 200 server-sent event stream, the
// only kind the commit window holds. A compressed one is passed on as it
// is: its events cannot be read without decoding it.
func isEventStream(resp *http.Response) bool {
	const mt = "text/event-stream"
	ct := resp.Header.Get("Content-Type")
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	return resp.StatusCode == http.StatusOK && len(ct) >= len(mt) && strings.EqualFold(ct[:len(mt)], mt)
}

// windowResult is what the commit window found, for the attempt's verdict.
type windowResult struct {
	// status and body stand for an error event: the status answer the
	// same error would have been, and the event's error object.
	status int
	body   []byte
	// failed: the attempt failed inside the window (an error event, or the
	// stream broke off), so a retry that follows is a stream failover.
	failed bool
}

// apply makes o the outcome the error event stands for.
func (w windowResult) apply(o *classify.Outcome, st *reqState) {
	if w.status == 0 {
		return
	}
	o.Status, o.Body = w.status, w.body
	if w.status == http.StatusForbidden || w.status == http.StatusNotFound {
		o.Model = st.modelName()
	}
}

// noteWindow remembers an in-window failure that will be retried; the next
// attempt counts it as a failover (streamFailover).
func (w windowResult) note(st *reqState, v classify.Verdict) {
	st.windowFailure = ""
	if !w.failed || !v.Retry {
		return
	}
	st.windowFailure = v.Fault.String()
	if w.status == 0 {
		st.windowFailure = "stream_reset"
	}
}

// streamFailover counts the attempt about to start as a failover when the
// one before it failed inside a stream's commit window.
func (p *Proxy) streamFailover(st *reqState) {
	if st.windowFailure != "" {
		p.sobs.StreamFailover(st.windowFailure)
		st.windowFailure = ""
	}
}

// commitWindow holds a 200 event stream until its first output
// (docs/api.md, "Streaming") and returns the response to give
// ReverseProxy, whose body then yields the held bytes at once and the rest
// of the stream as it arrives. An error event inside the window is
// returned as its status in w, with the same stream as the body should it
// be the final answer; a stream that breaks off or stays silent inside the
// window is an error, since nothing of it reached the client.
func (p *Proxy) commitWindow(ctx context.Context, st *reqState, resp *http.Response) (_ *http.Response, w windowResult, _ error) {
	s := &stream{
		p: p, st: st, ctx: ctx, body: resp.Body,
		parsing:   true,
		idle:      p.opts.StreamIdleTimeout,
		keepalive: p.opts.StreamKeepalive,
	}
	s.startWatchdog()
	end, err := s.window(ctx)
	if err != nil {
		s.Close()
		return nil, windowResult{failed: true}, err
	}
	resp.Body = s
	if end.kind == evError {
		// The stream, held bytes first, is the answer should this error be
		// final; while other attempts run, hold keeps it as it is. It is
		// given masked (any pool key the error quotes) and recorded with
		// the error's status (docs/api.md, "Streaming").
		set := p.redact.set()
		resp.Body = &errorStream{ReadCloser: set.RedactReader(s), status: end.status}
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		return resp, windowResult{status: end.status, body: set.Redact(end.body), failed: true}, nil
	}
	return resp, windowResult{}, nil
}

// errorStream is the body of an event stream whose commit window ended in
// an error event: modifyResponse records the request with status, the
// status the same error has as an answer, rather than the stream's 200.
type errorStream struct {
	io.ReadCloser
	status int
}

// windowEnd is why the window closed without an error.
type windowEnd struct {
	kind   eventKind // evOutput, evError, or evOther (also size, time, EOF)
	status int
	body   []byte
}

// stream is the body of a held event stream: in the window it reads ahead
// through a pump goroutine; after the commit it hands out the held bytes,
// then reads on its own (or, with keepalives, through the pump so that it
// can answer a silence with a comment). Read and Close are called by one
// goroutine at a time (the attempt loop, then ReverseProxy); the watchdog
// timer only closes the upstream body.
type stream struct {
	p    *Proxy
	st   *reqState
	ctx  context.Context // the client request's
	body io.ReadCloser

	held []byte // bytes read ahead and not yet handed out
	// pooled is the held buffer when it came from heldPool and may go back
	// once handed out.
	pooled *[]byte
	chunk  []byte // the rest of the pump's last read, not yet handed out
	kbuf   []byte // the pump's buffer after the commit (keepalives on)
	rerr   error  // the error that came with the pump's last read
	pm     *pump
	// out, when set, is the client's writer: the committed stream writes
	// to it itself (relay) rather than through ReverseProxy's buffer, and
	// waits for the upstream's next bytes through ready (the body).
	out   *countingWriter
	ready readyWaiter

	// parser follows the stream while anything needs its events (parsing):
	// until the first output (time to first token), and for as long as
	// keepalives need to know where events end.
	parser  sse.Parser
	parsing bool
	started bool // the first Read came: the stream reached the client
	token   bool // the first output is in held: report it when handed out
	tokened bool // the first output was reported (or never will be)

	idle, keepalive time.Duration
	kaTimer         *time.Timer

	// waitingSince is when the current upstream read began (UnixNano), 0
	// while none is waiting: the watchdog measures silence from it, so a
	// slow client is not taken for a silent upstream.
	waitingSince atomic.Int64
	idleFired    atomic.Bool
	watchdog     *time.Timer
	done         atomic.Bool // the stream ended: the watchdog stops

	closeOnce sync.Once
}

// pump reads the upstream body in its own goroutine, one read per ask into
// the buffer asked with, so that the reader can wait for it with a
// deadline. The reader leaves that buffer alone until the result is in.
type pump struct {
	body io.Reader
	ask  chan []byte
	res  chan pumped // buffered: the pump never blocks on a reader gone
	busy bool        // a read was asked and its result not yet taken
}

type pumped struct {
	b   []byte // what was read, in the buffer asked with
	err error
}

func (pm *pump) run() {
	for buf := range pm.ask {
		n, err := pm.body.Read(buf)
		pm.res <- pumped{buf[:n], err}
		if err != nil {
			return
		}
	}
}

func (s *stream) startPump() {
	s.pm = &pump{body: s.body, ask: make(chan []byte), res: make(chan pumped, 1)}
	go s.pm.run()
}

// stopPump ends the pump once it is idle; reads go straight to the body
// from then on.
func (s *stream) stopPump() {
	if s.pm != nil && !s.pm.busy {
		close(s.pm.ask)
		s.pm = nil
	}
}

// askPump starts a read into buf if none is under way.
func (s *stream) askPump(buf []byte) {
	if !s.pm.busy {
		s.waitingSince.Store(time.Now().UnixNano())
		s.pm.ask <- buf
		s.pm.busy = true
	}
}

// took takes the pump's result.
func (s *stream) took(r pumped) []byte {
	s.pm.busy = false
	s.waitingSince.Store(0)
	return r.b
}

// spare is the held buffer's free room for the next window read, grown
// when short.
func (s *stream) spare() []byte {
	if s.held == nil {
		s.pooled = heldPool.Get().(*[]byte)
		s.held = (*s.pooled)[:0]
	}
	if cap(s.held)-len(s.held) < windowRead {
		grown := make([]byte, len(s.held), 2*cap(s.held))
		copy(grown, s.held)
		s.held = grown
		s.release()
	}
	return s.held[len(s.held):cap(s.held)]
}

// heldPool recycles the first held buffer of each window: a stream needs
// it for a moment only, and a burst of streams opening at once would
// otherwise leave that much garbage per stream.
var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*windowRead); return &b }}

// release puts the pooled held buffer back. Only when nothing can still
// refer to it: not the bytes left to hand out, not a read under way into
// its spare room, not a body kept by hold.
func (s *stream) release() {
	if s.pooled != nil {
		heldPool.Put(s.pooled)
		s.pooled = nil
	}
}

// window reads until the stream may be committed (docs/api.md, "Streaming").
func (s *stream) window(ctx context.Context) (windowEnd, error) {
	s.startPump()
	limit := s.p.opts.StreamWindow
	if limit <= 0 {
		limit = defaultWindowTime
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		if !s.pm.busy {
			s.askPump(s.spare())
		}
		select {
		case r := <-s.pm.res:
			b := s.took(r)
			s.held = s.held[:len(s.held)+len(b)] // b was read into the spare room
			if end, done := s.scanWindow(b); done {
				s.rerr = r.err // handed on once the held bytes are out
				return end, nil
			}
			switch {
			case r.err == io.EOF:
				s.rerr = io.EOF
				return windowEnd{kind: evOther}, nil
			case r.err != nil:
				if s.idleFired.Load() {
					return windowEnd{}, idleError{}
				}
				return windowEnd{}, r.err
			case len(s.held) >= windowBytes:
				// Held in full without output: stop looking for a first
				// token rather than parse a stream of unknown shape on.
				s.stopParsing()
				return windowEnd{kind: evOther}, nil
			}
		case <-deadline.C:
			return windowEnd{kind: evOther}, nil
		case <-ctx.Done():
			return windowEnd{}, ctx.Err()
		}
	}
}

// scanWindow feeds b to the parser and reports the first event that ends
// the window.
func (s *stream) scanWindow(b []byte) (end windowEnd, done bool) {
	s.parser.Feed(b, func(e sse.Event) {
		if done {
			return
		}
		switch kind, status, body := classifyEvent(e); kind {
		case evPreamble:
		case evOutput:
			s.token = true
			end, done = windowEnd{kind: evOutput}, true
		case evError:
			// The event's bytes outlive the parser's buffer.
			end, done = windowEnd{kind: evError, status: status, body: append([]byte(nil), body...)}, true
		default:
			end, done = windowEnd{kind: evOther}, true
		}
	})
	if done && end.kind == evOther {
		s.stopParsing() // a shape without known tokens
	}
	return end, done
}

func (s *stream) stopParsing() {
	if s.keepalive <= 0 {
		s.parser, s.parsing = sse.Parser{}, false
	}
	s.tokened = true
}

// Read hands out the held bytes, then the stream as it arrives.
func (s *stream) Read(p []byte) (int, error) {
	if !s.started {
		// The headers and first bytes go out after this read.
		s.started = true
		s.p.sobs.StreamFirstByte(time.Since(s.st.start))
	}
	if s.out != nil {
		return s.relay()
	}
	if len(s.held) > 0 {
		n := copy(p, s.held)
		s.held = s.held[n:]
		if len(s.held) == 0 {
			s.handedOut()
		}
		return n, nil
	}
	if len(s.chunk) > 0 {
		n := copy(p, s.chunk)
		s.chunk = s.chunk[n:]
		return n, nil
	}
	if s.rerr != nil {
		return 0, s.fail(s.rerr)
	}
	if s.pm != nil && s.keepalive <= 0 {
		s.stopPump()
	}
	if s.pm == nil {
		return s.readDirect(p)
	}
	return s.readPumped(p)
}

// handedOut: the held bytes are out. The held buffer goes back to its
// pool unless a read is still writing into its spare room.
func (s *stream) handedOut() {
	s.held = nil
	if s.pm == nil || !s.pm.busy {
		s.release()
	} else {
		s.pooled = nil // the read under way writes into it
	}
	s.reportToken()
}

// readyWaiter is an upstream body that can wait for its next bytes
// without a buffer (h1client's).
type readyWaiter interface{ WaitReady() }

// relay is Read for a stream that writes to the client itself (out set:
// keepalives off, an h1client body): each call sends the held bytes, or
// the next bytes from upstream, and returns none for ReverseProxy to copy;
// its buffer is one byte (requestBufs). Between events it holds no buffer:
// the upstream body waits on the socket (ready), and a copy buffer is
// taken only once bytes are there. A write that fails returns
// context.Canceled, the one error ReverseProxy aborts on without logging,
// as it does when its own write to a client that left fails.
func (s *stream) relay() (int, error) {
	if len(s.held) > 0 {
		err := s.out.send(s.held)
		s.handedOut()
		return 0, clientGone(err)
	}
	if s.rerr != nil {
		return 0, s.fail(s.rerr)
	}
	if s.pm != nil && s.pm.busy {
		// The window closed on its deadline with a read under way, into
		// the held buffer's spare room.
		r := <-s.pm.res
		b := s.took(r)
		s.scan(b)
		s.rerr = r.err
		return 0, clientGone(s.out.send(b))
	}
	s.stopPump()
	s.waitingSince.Store(time.Now().UnixNano())
	s.ready.WaitReady()
	buf := s.p.bufs.Get()
	n, err := s.body.Read(buf)
	s.waitingSince.Store(0)
	var werr error
	if n > 0 {
		s.scan(buf[:n])
		werr = s.out.send(buf[:n])
	}
	s.p.bufs.Put(buf)
	switch {
	case werr != nil:
		return 0, clientGone(werr)
	case err != nil:
		return 0, s.fail(err)
	}
	return 0, nil
}

// clientGone is relay's error for a failed write to the client (see relay).
func clientGone(err error) error {
	if err != nil {
		return context.Canceled
	}
	return nil
}

func (s *stream) readDirect(p []byte) (int, error) {
	s.waitingSince.Store(time.Now().UnixNano())
	n, err := s.body.Read(p)
	s.waitingSince.Store(0)
	if n > 0 {
		s.scan(p[:n])
	}
	if err != nil {
		err = s.fail(err)
	}
	return n, err
}

// readPumped waits for the pump, and with keepalives on answers a silence
// at an event boundary with a comment line.
func (s *stream) readPumped(p []byte) (int, error) {
	if !s.pm.busy {
		if s.kbuf == nil {
			s.kbuf = make([]byte, keepaliveBuf)
		}
		s.askPump(s.kbuf)
	}
	var ka <-chan time.Time
	if s.keepalive > 0 {
		if s.kaTimer == nil {
			s.kaTimer = time.NewTimer(s.keepalive)
		} else {
			s.kaTimer.Reset(s.keepalive)
		}
		ka = s.kaTimer.C
	}
	for {
		select {
		case r := <-s.pm.res:
			if s.kaTimer != nil {
				s.kaTimer.Stop()
			}
			b := s.took(r)
			s.scan(b)
			n := copy(p, b)
			s.chunk = b[n:]
			if r.err != nil {
				s.rerr = r.err
				if len(s.chunk) == 0 {
					return n, s.fail(r.err)
				}
			}
			return n, nil
		case <-ka:
			if !s.parsing || s.parser.Pending() {
				// Half an event is in: a comment now would land inside it.
				s.kaTimer.Reset(s.keepalive)
				continue
			}
			n := copy(p, keepaliveComment)
			s.chunk = keepaliveComment[n:]
			return n, nil
		}
	}
}

// scan follows the stream's events while something needs them.
func (s *stream) scan(b []byte) {
	if !s.parsing {
		return
	}
	if !s.tokened {
		s.parser.Feed(b, func(e sse.Event) {
			if !s.token {
				if kind, _, _ := classifyEvent(e); kind == evOutput {
					s.token = true
				}
			}
		})
		if s.token {
			s.reportToken()
		}
		return
	}
	s.parser.Feed(b, func(sse.Event) {})
}

// reportToken reports the time to first token once, as its bytes go out.
func (s *stream) reportToken() {
	if s.token && !s.tokened {
		s.p.sobs.StreamFirstToken(time.Since(s.st.start))
		s.stopParsing()
	}
}

// fail turns the upstream's read error into the stream's: EOF passes, a
// silence longer than STREAM_IDLE_TIMEOUT is errStreamIdle, anything else
// (unless the client went away) is a broken stream. The access line says
// which.
func (s *stream) fail(err error) error {
	if err == io.EOF {
		s.stopWatchdog()
		return err
	}
	switch {
	case s.idleFired.Load():
		s.st.streamFailure = reasonStreamIdle
		return errStreamIdle
	case s.ctx.Err() != nil:
		// The client went away: nothing failed upstream.
	default:
		s.st.streamFailure = reasonStreamBroken
	}
	return err
}

// Close releases the upstream body, the pump and the timers.
func (s *stream) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stopWatchdog()
		if s.kaTimer != nil {
			s.kaTimer.Stop()
		}
		err = s.body.Close()
		if s.pm != nil {
			// A busy pump finishes its read (which fails on the closed
			// body), leaves the result in the buffered channel and exits.
			close(s.pm.ask)
		}
		s.pm = nil
		s.held, s.chunk = nil, nil
	})
	return err
}

// startWatchdog arms the idle timer: every STREAM_IDLE_TIMEOUT it looks at
// how long the current upstream read has waited, and closes the upstream
// body once that is the whole timeout. A timer, not a goroutine per
// stream, and no work per chunk beyond storing the time.
func (s *stream) startWatchdog() {
	if s.idle <= 0 {
		return
	}
	s.watchdog = time.AfterFunc(math.MaxInt64, s.checkIdle)
	s.watchdog.Reset(s.idle)
}

func (s *stream) checkIdle() {
	if s.done.Load() {
		return
	}
	next := s.idle
	if since := s.waitingSince.Load(); since != 0 {
		silent := time.Duration(time.Now().UnixNano() - since)
		if silent >= s.idle {
			s.idleFired.Store(true)
			s.body.Close() // the blocked read returns with an error
			return
		}
		next = s.idle - silent
	}
	s.watchdog.Reset(next)
}

func (s *stream) stopWatchdog() {
	s.done.Store(true)
	if s.watchdog != nil {
		s.watchdog.Stop()
	}
}
