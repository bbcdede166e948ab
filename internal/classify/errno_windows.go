package classify

import "syscall"

// Winsock reports its own error numbers (WSAE*), which package syscall's
// POSIX-named Errnos on Windows do not match.
// https://learn.microsoft.com/windows/win32/winsock/windows-sockets-error-codes-2
const (
	errConnRefused     = syscall.Errno(10061) // WSAECONNREFUSED
	errConnReset       = syscall.WSAECONNRESET
	errBrokenPipe      = syscall.Errno(10053) // WSAECONNABORTED
	errHostUnreachable = syscall.Errno(10065) // WSAEHOSTUNREACH
	errNetUnreachable  = syscall.Errno(10051) // WSAENETUNREACH
)
