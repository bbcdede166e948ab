package proxy

import "sync"

// copyBufferSize is the size of the buffer a response is copied through.
// A committed event stream takes one per read and gives it back before it
// waits again (stream.relay); a body ReverseProxy copies holds one until it
// ends, which for a stream with keepalives on, or any answer that trickles,
// is as long as it stays open. So it is kept small: 4 KiB fits the SSE
// events of a chat completion (a rare larger one goes in two writes), and a
// large download costs a few more reads, not more memory. 2 KiB would
// make every read of a large body half the size: an 8 MiB answer at
// 193-234 MB/s against 283-300 (BenchmarkLargeAnswer).
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

// requestBufs is one request's ReverseProxy.BufferPool: the proxy's pool,
// or, for a stream that writes to the client itself (out.relay,
// stream.relay), one byte that nothing reads into (an empty buffer would
// make ReverseProxy allocate its own).
type requestBufs struct {
	pool *bufferPool
	out  *countingWriter
	one  [1]byte
}

func (c *requestBufs) Get() []byte {
	if c.out.relay {
		return c.one[:]
	}
	return c.pool.Get()
}

func (c *requestBufs) Put(s []byte) { c.pool.Put(s) } // one byte is not kept
