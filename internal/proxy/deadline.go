package proxy

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"time"
)

// Every phase of an attempt has a deadline, whatever the upstream does
// (docs/api.md, "Bad input and faults"):
//
//   - connecting: REQUEST_TIMEOUT, in the transport's dialer;
//   - sending the request and receiving the headers: RESPONSE_TIMEOUT from
//     the start of sending (phaseSend), so an upstream that never reads the
//     body is a timeout; the transport's own header timer only starts once
//     the body is written;
//   - reading an error body: defaultErrorBodyTimeout (phaseErrorBody), after
//     which the answer is classified by what arrived, its status at least;
//   - the final response's body: STREAM_IDLE_TIMEOUT of silence between
//     chunks (phaseBody); event streams have their own watchdog (stream.go).
//
// One timer per request serves every phase, since the phases of a request
// follow one another; it is made at the first phase and stopped when the
// request ends, so nothing of the request outlives it.

// defaultErrorBodyTimeout bounds the read of an error answer's body
// (Options.ErrorBodyTimeout).
const defaultErrorBodyTimeout = 10 * time.Second

// Phases of a request's deadline timer. The low byte of deadlines.word
// holds one; the rest is a generation, so that a timer that fired for an
// earlier phase never ends a later one.
const (
	phaseNone uint64 = iota
	phaseSend
	phaseErrorBody
	phaseBody
	phaseExpired
)

// epoch makes now monotonic: times measured from it follow the clock
// timers run on, whatever the wall clock does. It is never written after
// initialisation.
var epoch = time.Now()

// now is the monotonic time in nanoseconds since epoch; never 0 after it.
func now() int64 { return int64(time.Since(epoch)) + 1 }

// deadlineTimeout is a phase's deadline passing. It is a timeout (a
// net.Error whose Timeout is true), so the attempt is classified like the
// transport's own timeouts.
type deadlineTimeout string

func (e deadlineTimeout) Error() string { return string(e) }
func (deadlineTimeout) Timeout() bool   { return true }
func (deadlineTimeout) Temporary() bool { return false }

var (
	errResponseTimeout = deadlineTimeout("no response headers within RESPONSE_TIMEOUT of the start of sending")
	errErrorBodyStall  = deadlineTimeout("the upstream's error body stalled")
)

// reasonErrorBodyStall: the final answer's error body stalled, for the
// access line.
const reasonErrorBodyStall = "upstream error body stalled"

// deadlines is a request's deadline timer and the attempt contexts it
// cancels. The request's goroutine arms and ends phases; the timer's
// callback only cancels an attempt or closes a body, deciding on word,
// which both sides change atomically.
type deadlines struct {
	st    *reqState
	timer *time.Timer
	// word is the generation << 8 | the phase armed; gen counts arms
	// (the request's goroutine alone writes it).
	word atomic.Uint64
	gen  uint64
	// due is when the armed phase ends (monotonic, see now), for a timer
	// that fires late for a phase that has since been replaced.
	due atomic.Int64
	// first and more are the attempts' contexts' cancel functions (a
	// slice only for retries); cur points at the current attempt's, for
	// the callback.
	first context.CancelCauseFunc
	more  []context.CancelCauseFunc
	cur   atomic.Pointer[context.CancelCauseFunc]

	idle time.Duration // STREAM_IDLE_TIMEOUT, for phaseBody
	// body is the final response's body under watch (idleBody).
	body io.ReadCloser
	// waiting is when the pending read of the final body began
	// (monotonic, see now), 0 while none is pending: silence is measured from it,
	// so a slow client is not taken for a silent upstream.
	waiting atomic.Int64
}

// begin gives an attempt its own context, derived from ctx, which the
// deadlines of its phases cancel.
func (d *deadlines) begin(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	if d.first == nil {
		d.first = cancel
		d.cur.Store(&d.first)
	} else {
		d.more = append(d.more, cancel)
		d.cur.Store(&d.more[len(d.more)-1])
	}
	d.gen++
	d.word.Store(d.gen << 8) // no phase armed
	return ctx
}

// arm starts phase ph, ending after dur.
func (d *deadlines) arm(ph uint64, dur time.Duration) {
	d.gen++
	d.due.Store(now() + int64(dur))
	d.word.Store(d.gen<<8 | ph)
	if d.timer == nil {
		// Made stopped, then set: the callback reads d.timer.
		d.timer = time.AfterFunc(math.MaxInt64, d.expire)
	}
	d.timer.Reset(dur)
}

// end ends phase ph if it is armed, and reports whether its deadline had
// passed.
func (d *deadlines) end(ph uint64) (expired bool) {
	w := d.word.Load()
	switch w & 0xff {
	case phaseExpired:
		return true
	case ph:
		if !d.word.CompareAndSwap(w, w&^0xff) {
			return true // the callback expired it meanwhile
		}
		d.timer.Stop()
	}
	return false
}

// armSend starts phaseSend: the attempt has its connection, sending
// starts (the client trace's GotConn).
func (d *deadlines) armSend(responseTimeout time.Duration) {
	if responseTimeout > 0 {
		d.arm(phaseSend, responseTimeout)
	}
}

// answered ends phaseSend when the transport returns. If RESPONSE_TIMEOUT
// passed first, the attempt's context was cancelled: whatever the
// transport returned is replaced by the timeout.
func (d *deadlines) answered(resp *http.Response, err error) (*http.Response, error) {
	if !d.end(phaseSend) {
		return resp, err
	}
	if resp != nil {
		resp.Body.Close()
	}
	return nil, errResponseTimeout
}

// expire is the timer's callback.
func (d *deadlines) expire() {
	w := d.word.Load()
	switch w & 0xff {
	case phaseSend, phaseErrorBody:
		if now() < d.due.Load() {
			return // fired for a phase since replaced; re-armed
		}
		if d.word.CompareAndSwap(w, w&^0xff|phaseExpired) {
			cause := errResponseTimeout
			if w&0xff == phaseErrorBody {
				cause = errErrorBodyStall
			}
			(*d.cur.Load())(cause)
		}
	case phaseBody:
		d.checkIdle(w)
	}
}

// release ends the request's deadlines: the timer stops and every
// attempt's context ends. It runs when the request ends.
func (d *deadlines) release() {
	d.gen++
	d.word.Store(d.gen << 8)
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.first != nil {
		d.first(nil)
	}
	for _, cancel := range d.more {
		cancel(nil)
	}
}

// readErrorBodyWithin reads an error answer's body for classification
// (readErrorBody in redact.go) within the error body's deadline:
// defaultErrorBodyTimeout (Options.ErrorBodyTimeout), or
// STREAM_IDLE_TIMEOUT when shorter. When it passes, the attempt's context
// is cancelled, and the answer is classified by what arrived: its status
// at least. Should the answer be the final one, the client gets what
// arrived and then a cut connection.
func (p *Proxy) readErrorBodyWithin(resp *http.Response, st *reqState) []byte {
	dur := p.opts.ErrorBodyTimeout
	if dur <= 0 {
		dur = defaultErrorBodyTimeout
	}
	if idle := p.opts.StreamIdleTimeout; idle > 0 && idle < dur {
		dur = idle
	}
	st.dl.arm(phaseErrorBody, dur)
	body := p.readErrorBody(resp)
	if st.dl.end(phaseErrorBody) {
		resp.Body = stalledBody{resp.Body}
	}
	return body
}

// stalledBody is an error body whose read was cut off by its deadline:
// the rest fails with errErrorBodyStall, so the access line says why.
type stalledBody struct{ io.ReadCloser }

func (b stalledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = errErrorBodyStall
	}
	return n, err
}

// watchBody puts the final response's body under STREAM_IDLE_TIMEOUT:
// a silence that long closes it, the client's connection is then cut
// without the final chunk and the access line says why. Event streams
// (stream.go) have their own watchdog; bodies that are none, or that
// ReverseProxy must be able to write to (101 Switching Protocols), are
// left alone.
func (d *deadlines) watchBody(resp *http.Response, idle time.Duration) {
	if idle <= 0 || resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	if _, ok := resp.Body.(*stream); ok {
		return
	}
	d.idle = idle
	d.body = resp.Body
	resp.Body = (*idleBody)(d)
	d.arm(phaseBody, idle)
}

// checkIdle closes the body once the pending read has waited the whole
// STREAM_IDLE_TIMEOUT, and otherwise looks again when it would have.
func (d *deadlines) checkIdle(w uint64) {
	next := d.idle
	if since := d.waiting.Load(); since != 0 {
		silent := time.Duration(now() - since)
		if silent >= d.idle {
			if d.word.CompareAndSwap(w, w&^0xff|phaseExpired) {
				d.body.Close() // the pending read returns with an error
			}
			return
		}
		next = d.idle - silent
	}
	d.timer.Reset(next)
	if d.word.Load()&0xff == phaseNone {
		// The body ended meanwhile: its Stop may have come before this
		// Reset, which must not keep the request alive.
		d.timer.Stop()
	}
}

// idleBody is the final response's body under STREAM_IDLE_TIMEOUT:
// deadlines seen as a body, so that watching costs no allocation. Read and
// Close are called by ReverseProxy's goroutine; the timer only closes the
// body.
type idleBody deadlines

func (b *idleBody) Read(p []byte) (int, error) {
	d := (*deadlines)(b)
	d.waiting.Store(now())
	n, err := d.body.Read(p)
	d.waiting.Store(0)
	switch {
	case err == nil:
	case err == io.EOF:
		d.end(phaseBody)
	default:
		err = d.failed(err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	d := (*deadlines)(b)
	d.end(phaseBody)
	return d.body.Close()
}

// failed names why the final body broke off, for the access line.
func (d *deadlines) failed(err error) error {
	st := d.st
	switch {
	case d.end(phaseBody):
		st.streamFailure = reasonStreamIdle
		return errStreamIdle
	case errors.Is(err, errErrorBodyStall):
		st.streamFailure = reasonErrorBodyStall
	case st.ctx.Context.Err() == nil:
		// Not the client leaving: the upstream broke off.
		st.streamFailure = reasonStreamBroken
	}
	return err
}
