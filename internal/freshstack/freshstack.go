// Package freshstack runs a call on a goroutine of its own, so that the
// stack that call grows is not the caller's.
//
// A stream's serving goroutine keeps the stack it grew to for as long as
// the stream runs: the runtime shrinks a stack at a collection only when
// less than a quarter of it is in use, and a stream waits for the
// upstream about 5 KB deep (net/http's server, the middleware,
// ReverseProxy, the read). Its stack stays at 8 KB as long as no call on
// the way goes deeper than about 7 KB, and is 16 KB for the stream's whole
// life once one does: 8 MB more per 1000 open streams
// (docs/performance.md, "A stream's memory").
//
// Three calls on a stream's way go deeper, each once per stream at most:
// dialing a new upstream connection (about 2.5 KB, entered 5 KB deep),
// encoding/json decoding an event the commit window reads (about 0.9 KB
// per level of nesting, entered 6.4 KB deep), and net/http writing the
// response head at the first flush (one 2.8 KB frame and about 1 KB below
// it, entered 4.7 KB deep). The dial runs through Run, the other two
// through Call.
package freshstack

import "sync/atomic"

// Run runs f on a new goroutine and waits for it to return: for a call
// that may block, such as a dial. A panic in f is raised again in the
// caller, where the server's recovery sees it.
func Run(f func()) {
	done := make(chan any, 1)
	go run(f, done)
	wait(done)
}

// Call runs f on one of a few goroutines kept for it and waits for it to
// return: for a short call that does not block, made at most once or
// twice per request. The kept goroutines' stacks grow once and stay,
// rather than be allocated and freed again per stream. When all are busy,
// f runs on a new goroutine, as with Run.
func Call(f func()) {
	done := make(chan any, 1)
	select {
	case calls <- call{f, done}:
	default:
		if workers.Add(1) <= maxWorkers {
			go work(call{f, done})
		} else {
			workers.Add(-1)
			go run(f, done)
		}
	}
	wait(done)
}

// maxWorkers bounds the goroutines kept for Call.
const maxWorkers = 16

type call struct {
	f    func()
	done chan<- any
}

var (
	calls   = make(chan call)
	workers atomic.Int32
)

func work(c call) {
	for {
		run(c.f, c.done)
		c = <-calls
	}
}

func run(f func(), done chan<- any) {
	defer func() { done <- recover() }()
	f()
}

func wait(done <-chan any) {
	if v := <-done; v != nil {
		panic(v)
	}
}
