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
	raw syscall.RawConn
	fn  func(fd uintptr) bool // peek as a method value, made once
	ok  bool
	buf [1]byte
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
