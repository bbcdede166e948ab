//go:build !windows

package classify

import "syscall"

// The errnos transport failures are told apart by (errno_windows.go has
// Winsock's).
const (
	errConnRefused     = syscall.ECONNREFUSED
	errConnReset       = syscall.ECONNRESET
	errBrokenPipe      = syscall.EPIPE
	errHostUnreachable = syscall.EHOSTUNREACH
	errNetUnreachable  = syscall.ENETUNREACH
)
