// Package asynclog takes log writes off the request path: lines are queued
// and written by one goroutine in batches, so a busy proxy pays a channel
// send per line instead of a write system call.
package asynclog

import (
	"io"
	"sync"
)

// queueLen is how many lines may wait. When the queue is full, Write waits
// for room: lines are never dropped, the writer slows instead.
const queueLen = 4096

// batchMax is the most bytes gathered into one write.
const batchMax = 64 << 10

// Writer is an io.Writer that queues each Write (one log line) and writes
// queued lines to the underlying writer in order, in batches. Close writes
// what is queued and stops. It is safe for concurrent use.
type Writer struct {
	out   io.Writer
	queue chan *[]byte
	done  chan struct{}
	bufs  sync.Pool

	mu     sync.RWMutex // held for writing by Close, for reading by Write
	closed bool
}

// New starts a Writer over out.
func New(out io.Writer) *Writer {
	w := &Writer{
		out:   out,
		queue: make(chan *[]byte, queueLen),
		done:  make(chan struct{}),
		bufs:  sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }},
	}
	go w.loop()
	return w
}

// Write queues a copy of p. After Close it writes p directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return w.out.Write(p)
	}
	b := w.bufs.Get().(*[]byte)
	*b = append((*b)[:0], p...)
	w.queue <- b
	return len(p), nil
}

func (w *Writer) loop() {
	defer close(w.done)
	batch := make([]byte, 0, batchMax)
	for b := range w.queue {
		batch = append(batch[:0], *b...)
		w.put(b)
		// Gather what else is already queued, without waiting for more.
	gather:
		for len(batch) < batchMax {
			select {
			case b, ok := <-w.queue:
				if !ok {
					break gather
				}
				batch = append(batch, *b...)
				w.put(b)
			default:
				break gather
			}
		}
		w.out.Write(batch)
	}
}

// put recycles a line's buffer unless an odd long line made it large.
func (w *Writer) put(b *[]byte) {
	if cap(*b) <= 4<<10 {
		w.bufs.Put(b)
	}
}

// Close writes every queued line and stops the background writer. Later
// writes go straight to the underlying writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.queue)
	w.mu.Unlock()
	<-w.done
	return nil
}
