package proxy

import "sync"

// copyBufferSize is the size of the buffer a response is copied through.
// A stream holds one for as long as it is open, so it is kept small: 4 KiB
// fits the SSE events of a chat completion (a rare larger one goes in two
// writes), and a large download costs a few more reads, not more memory
// per open stream. With 1000 open streams the live heap is 4 MB smaller
// than with 8 KiB; 2 KiB would save 2 MB more, but every read of a large
// body would be half the size: an 8 MiB answer at 193-234 MB/s against
// 283-300 (BenchmarkLargeAnswer).
const copyBufferSize = 4 << 10

// bufferPool recycles ReverseProxy's copy buffers, which would otherwise
// cost a fresh buffer of garbage per response. It pools array pointers:
// a slice converts back to one without allocating, where pooling a
// *[]byte would allocate a new slice header on every Put.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(s []byte) {
	if cap(s) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(s[:copyBufferSize]))
	}
}
