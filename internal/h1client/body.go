package h1client

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
)

// body is an answer's body. It reads from the connection through the
// framing http.ReadResponse set up (length, chunks or the connection's
// end); at its end the connection goes back to the idle pool.
type body struct {
	t    *Transport
	c    *conn
	ctx  context.Context
	rc   io.ReadCloser
	keep bool // the connection may carry another exchange
	// state: bodyOpen, then bodyEnded (read to its end) or bodyClosed.
	// Close may come from another goroutine while a Read is blocked (a
	// deadline's timer): the connection's close ends that Read.
	state atomic.Int32
}

const (
	bodyOpen int32 = iota
	bodyEnded
	bodyClosed
)

// errBodyClosed is a Read after Close.
var errBodyClosed = errors.New("h1client: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEnded:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	if b.c.bufferless.Load() {
		b.c.takeBuffer()
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		b.end(true)
		return n, io.EOF
	}
	if b.ctx.Err() != nil {
		err = context.Cause(b.ctx)
	}
	b.end(false)
	return n, err
}

// WaitReady blocks until the body has something to read (bytes, its end
// or an error) and holds no read buffer meanwhile: the connection's goes
// back to a pool until the next Read, so a stream waiting for its next
// event keeps none. It returns at once when bytes are buffered already,
// and on platforms where the socket cannot be waited on. Call it from the
// goroutine that reads; Close from another one ends the wait.
func (b *body) WaitReady() {
	c := b.c
	if b.state.Load() != bodyOpen || c.br.Buffered() > 0 {
		return
	}
	if !c.bufferless.Load() {
		c.lendBuffer()
	}
	c.wait()
}

// Close ends the exchange: the connection is closed unless the body was
// read to its end. It never drains what is left.
func (b *body) Close() error {
	b.end(false)
	return nil
}

func (b *body) end(eof bool) {
	next := bodyClosed
	if eof {
		next = bodyEnded
	}
	if !b.state.CompareAndSwap(bodyOpen, next) {
		return
	}
	c := b.c
	if c.stop() && eof && b.keep && c.br.Buffered() == 0 {
		b.t.put(c)
		return
	}
	c.nc.Close()
}
