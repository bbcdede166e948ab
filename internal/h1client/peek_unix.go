//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1client

import (
	"net"
	"syscall"
)

// supported: this platform can tell an idle connection the upstream
// closed (peeker.alive), so the transport serves requests itself.
const supported = true

// peeker checks an idle connection without reading from it: a
// non-blocking MSG_PEEK receive says whether the upstream closed it (0
// bytes), sent something unasked (more), or left it quiet (EAGAIN). It is
// the one read net/http's idle reading goroutine would have done.
type peeker struct {
	raw   syscall.RawConn
	fn    func(fd uintptr) bool // peek as a method value, made once
	ready func(fd uintptr) bool // readable, likewise
	ok    bool
	woke  bool // readable: the wait for the socket ended
	buf   [1]byte
}

func (p *peeker) init(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	p.raw = raw
	p.fn = p.peek
	p.ready = p.readable
}

func (p *peeker) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}

// alive reports whether the idle connection is open and quiet. A
// connection that cannot be checked counts as alive.
func (p *peeker) alive() bool {
	if p.raw == nil {
		return true
	}
	p.ok = false
	if err := p.raw.Read(p.fn); err != nil {
		return false
	}
	return p.ok
}

// wait blocks until the connection has bytes to read, its end or an
// error, without reading: the poller waits on the socket, not a Read
// with a buffer. A connection that cannot be waited on returns at once.
func (p *peeker) wait() {
	if p.raw == nil {
		return
	}
	p.woke = false
	p.raw.Read(p.ready) // an error (closed, deadline) is the next Read's
}

// readable is wait's check, called before the poller waits and after it
// woke: a non-blocking peek first, since the poller forgets readiness
// that came before the wait began; once woken, the Read that follows
// finds out what came.
func (p *peeker) readable(fd uintptr) bool {
	if p.woke {
		return true
	}
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		p.woke = true // the next call comes after the wait
		return false
	}
	return true
}
