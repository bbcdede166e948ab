package providersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault is how a target misbehaves, whatever the key: the faults of an
// upstream or of what stands in front of it, as the chaos harness draws
// them. A fault acts on the work endpoints (chat completions and audio
// transcriptions); FaultGateway401 also on GET /v1/models, as a gateway
// refuses every path.
type Fault string

// The fault modes.
const (
	FaultNone Fault = ""
	// FaultResetBefore resets the connection (TCP RST) before the request
	// body is read: the client may not even have sent all of it.
	FaultResetBefore Fault = "reset_before"
	// FaultResetAfter reads the whole request body, then resets the
	// connection before answering: the upstream may have done the work.
	FaultResetAfter Fault = "reset_after"
	// FaultStallHeaders reads the body and sends nothing, until StallMax,
	// the client leaving or the simulator closing.
	FaultStallHeaders Fault = "stall_headers"
	// FaultStallBody sends a 200's headers (an event stream when the
	// request asked for one; otherwise JSON, in turn with a Content-Length
	// promised and chunked with the body's first bytes sent), then
	// nothing, as long as FaultStallHeaders would; the body then ends
	// short.
	FaultStallBody Fault = "stall_body"
	// FaultStallError reads the body, sends a 500's or a 503's headers and
	// the first bytes of its JSON body (in turn with a Content-Length and
	// chunked), then nothing, as long as FaultStallHeaders would.
	FaultStallError Fault = "stall_error"
	// FaultNoRead never reads the request body: it holds the connection,
	// reading nothing, as long as FaultStallHeaders would, then closes it.
	// A body larger than the socket buffers (a few MiB on loopback) then
	// cannot be sent in full.
	FaultNoRead Fault = "no_read"
	// FaultEchoKey answers as the provider would, but every answer's
	// headers echo the key it was sent (X-Api-Key, a Location with
	// ?key=, WWW-Authenticate's realm), every error body quotes it, raw
	// and after escapes (a JSON \u0027, \n, %3D), a third of the work
	// requests get a 500 or 503 quoting it, and error bodies come
	// compressed (gzip, GZIP, zlib deflate, raw deflate, or plain; some
	// padded past 64 KiB compressed), whether the request asked for the
	// coding or not: an upstream that leaks and ignores Accept-Encoding.
	FaultEchoKey Fault = "echo_key"
	// Fault5xx answers 500, 502 and 503 in turn, with OpenAI's bodies.
	Fault5xx Fault = "5xx"
	// FaultGateway401 is a gateway in front of the provider that answers
	// 401 to every key (its own credentials expired, say): every key is
	// refused at once, which only a target-wide view can tell apart from
	// revoked keys.
	FaultGateway401 Fault = "gateway_401"
	// FaultDown closes the target's listener: connection refused.
	FaultDown Fault = "down"
)

var faultList = strings.Join([]string{string(FaultResetBefore), string(FaultResetAfter), string(FaultStallHeaders),
	string(FaultStallBody), string(FaultStallError), string(FaultNoRead), string(Fault5xx), string(FaultGateway401),
	string(FaultEchoKey)}, ", ")

// Faults are every fault mode but FaultNone, for drawing one at random.
var Faults = []Fault{FaultResetBefore, FaultResetAfter, FaultStallHeaders, FaultStallBody, FaultStallError, FaultNoRead,
	Fault5xx, FaultGateway401, FaultEchoKey, FaultDown}

// episodeFault reports whether kind names a fault mode an episode may
// use (every one but FaultNone and FaultDown).
func episodeFault(kind string) bool {
	for _, f := range Faults {
		if f != FaultDown && string(f) == kind {
			return true
		}
	}
	return false
}

// SetFault puts target i in fault mode f until the next SetFault or
// Reset; FaultNone ends it. FaultDown closes the target's listener and
// any other mode brings it back on the same address. Safe for concurrent
// use.
func (s *Sim) SetFault(i int, f Fault) error {
	if i < 0 || i >= len(s.targets) {
		return fmt.Errorf("target %d: want 0 to %d", i, len(s.targets)-1)
	}
	t := s.targets[i]
	t.fault.Store(&f)
	if f == FaultDown {
		t.down()
		return nil
	}
	return t.up()
}

// SetStorm starts (on) or ends an IP-wide 429 storm on every target, as
// EpisodeStorm does, with Retry-After retryAfter seconds (0: none).
func (s *Sim) SetStorm(on bool, retryAfter int) {
	if !on {
		s.storm.Store(-1)
		return
	}
	s.storm.Store(int64(retryAfter))
}

// faultNow is the fault mode target t is in at elapsed time el: the one
// set by SetFault, else that of an active episode on it.
func (t *target) faultNow(el time.Duration) Fault {
	if f := t.fault.Load(); f != nil && *f != FaultNone {
		return *f
	}
	for _, e := range t.sim.cfg.Episodes {
		if e.Target == t.idx && e.Active(el) && e.Kind != EpisodeDown && e.Kind != Episode503 && e.Kind != EpisodeStorm {
			return Fault(e.Kind)
		}
	}
	return FaultNone
}

// stormNow reports whether an IP-wide storm is on at el, and its
// Retry-After in seconds.
func (s *Sim) stormNow(el time.Duration) (bool, int) {
	if ra := s.storm.Load(); ra >= 0 {
		return true, int(ra)
	}
	for _, e := range s.cfg.Episodes {
		if e.Kind == EpisodeStorm && e.Active(el) {
			return true, e.RetryAfter
		}
	}
	return false, 0
}

// misbehave acts out fault f for a work request and reports whether it
// answered (the caller then stops).
func (s *Sim) misbehave(w http.ResponseWriter, r *http.Request, t *target, k *keyState, sec int, f Fault) bool {
	switch f {
	case FaultResetBefore:
		s.record(t, k, sec, Reset)
		resetConn(w)
	case FaultResetAfter:
		readAll(r)
		s.record(t, k, sec, Reset)
		resetConn(w)
	case FaultStallHeaders:
		readAll(r)
		s.record(t, k, sec, Stalled)
		s.stall(r)
		panic(http.ErrAbortHandler) // close the connection without an answer
	case FaultStallBody:
		stream := bytes.Contains(readAll(r), []byte(`"stream":true`))
		s.record(t, k, sec, Stalled)
		h := w.Header()
		chunked := s.serial.Add(1)%2 == 0
		switch {
		case stream:
			h.Set("Content-Type", "text/event-stream")
		case chunked:
			h.Set("Content-Type", "application/json") // chunked: no length
		default:
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", "512") // promised, never sent
		}
		w.WriteHeader(http.StatusOK)
		if chunked && !stream {
			io.WriteString(w, `{"id":"chatcmpl-stalled","object":"chat.completion",`)
		}
		http.NewResponseController(w).Flush()
		s.stall(r)
		// Close the connection with the body short (no final chunk): the
		// client sees an unexpected EOF.
		panic(http.ErrAbortHandler)
	case FaultStallError:
		readAll(r)
		s.record(t, k, sec, Stalled)
		n := s.serial.Add(1)
		status, e := http.StatusInternalServerError, errServer()
		if n%2 == 0 {
			status, e = http.StatusServiceUnavailable, errOverloaded()
		}
		b, _ := json.Marshal(e)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		if n%4 < 2 {
			h.Set("Content-Length", strconv.Itoa(len(b))) // promised, never sent in full
		}
		w.WriteHeader(status)
		w.Write(b[:len(b)/2])
		http.NewResponseController(w).Flush()
		s.stall(r)
		panic(http.ErrAbortHandler)
	case FaultNoRead:
		// Nothing read: the client's body waits in the socket buffers.
		s.record(t, k, sec, Stalled)
		s.stall(r)
		panic(http.ErrAbortHandler)
	case Fault5xx:
		readAll(r)
		s.record(t, k, sec, ServerError)
		switch s.serial.Add(1) % 3 {
		case 0:
			writeError(w, http.StatusInternalServerError, errServer())
		case 1:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(badGatewayHTML))
		default:
			writeError(w, http.StatusServiceUnavailable, errOverloaded())
		}
	case FaultGateway401:
		readAll(r)
		s.record(t, k, sec, Gateway)
		writeError(w, http.StatusUnauthorized, errInvalidKey(maskKey(bearer(r))))
	default:
		return false
	}
	return true
}

// stall waits until StallMax passes, the client leaves (which a server
// sees only once the request body was read), the target is closed
// (which cancels the request's context) or Unstall is called.
func (s *Sim) stall(r *http.Request) {
	tm := time.NewTimer(s.cfg.StallMax.D())
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-r.Context().Done():
	case <-s.unstalled():
	}
}

// Unstall ends every stall in progress at once (their connections are
// closed without an answer), and every later one as it starts, until
// the next Reset: for a runner that wants the simulator's handlers done
// once its clients stopped. It also closes the targets' idle
// connections.
func (s *Sim) Unstall() {
	s.mu.Lock()
	ch := s.unstall
	s.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
	for _, t := range s.targets {
		t.mu.Lock()
		if t.srv != nil {
			// Closes the idle connections; new ones are kept alive again.
			t.srv.SetKeepAlivesEnabled(false)
			t.srv.SetKeepAlivesEnabled(true)
		}
		t.mu.Unlock()
	}
}

func (s *Sim) unstalled() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unstall
}

// resetConn ends the connection with a TCP RST, no answer. Without a
// connection to take over (HTTP/2), the handler aborts.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // close sends RST, not FIN
	}
	conn.Close()
}

// readAll reads the request body, as an upstream that accepted the
// request does before it fails, up to maxBody; it returns the first MiB.
func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
	return b
}

// maxBody bounds what the simulator reads of one request body.
const maxBody = 8 << 20

const badGatewayHTML = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

// retryAfter sets a Retry-After of n seconds when n > 0.
func retryAfter(h http.Header, n int) {
	if n > 0 {
		h.Set("Retry-After", strconv.Itoa(n))
	}
}
