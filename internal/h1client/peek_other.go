//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1client

import "net"

// supported: without a way to peek at an idle socket, a connection the
// upstream closed would be found only by the request sent on it; every
// request goes to the fallback (net/http) instead.
const supported = false

type peeker struct{}

func (*peeker) init(net.Conn) {}
func (*peeker) alive() bool   { return true }
func (*peeker) wait()         {}
