package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/gpt-load/gpt-load/internal/modelname"
)

// firstChunk is the buffer a request body is first read into. Memory then
// doubles as bytes actually arrive: a declared Content-Length is never
// trusted for an allocation (docs/api.md, "Forwarding"), so a client that
// declares 32 MiB and sends one byte costs this much, not 32 MiB.
const firstChunk = 4 << 10

// spoolPrefix names the temporary files request bodies are spooled to.
const spoolPrefix = "gpt-load-body-"

// errBodyTooLarge is returned by readBody for a body over the size limit.
var errBodyTooLarge = errors.New("request body too large")

// spoolError is the proxy's own failure to keep a body in its temporary
// file (a full disk, a temp dir that cannot be written): not the client's
// fault, unlike a body that cannot be read.
type spoolError struct{ err error }

func (e *spoolError) Error() string { return "spool the request body: " + e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }

// body is a request body kept so that every attempt can send the same
// bytes: in memory up to the memory limit, beyond it in a temporary file.
// Readers made by reader are independent and may be used concurrently (a
// transport can still be reading an earlier attempt's body). Close
// releases the file; it is safe to call more than once.
type body struct {
	mem  []byte
	file *os.File
	size int64

	closeOnce sync.Once
}

// Len is the body's size in bytes.
func (b *body) Len() int64 {
	if b == nil {
		return 0
	}
	return b.size
}

// reader returns a fresh reader over the whole body.
func (b *body) reader() io.ReadCloser {
	if b.file != nil {
		return io.NopCloser(io.NewSectionReader(b.file, 0, b.size))
	}
	return io.NopCloser(bytes.NewReader(b.mem))
}

// Bytes returns the body when it is held in memory, nil when it is in a
// file (callers that only peek at it, e.g. for the model field, then do
// without).
func (b *body) Bytes() []byte {
	if b == nil {
		return nil
	}
	return b.mem
}

// forModel returns bytes from which modelname reads the body's model as
// it would from the whole body: the body itself when in memory; for a body
// in a file, a small digest of it (modelDigest), so that it is never read
// back into memory.
func (b *body) forModel() []byte {
	if b == nil || b.file == nil {
		return b.Bytes()
	}
	return modelDigest(bufio.NewReaderSize(io.NewSectionReader(b.file, 0, b.size), 16<<10))
}

// model returns the model a request for path with this body and
// contentType asks for (modelname.Of), without reading a spooled body
// back into memory: a JSON one through its digest, a multipart one
// streamed from the file up to its model field.
func (b *body) model(path, contentType string) string {
	if b == nil || b.file == nil {
		return modelname.Of(path, contentType, b.Bytes())
	}
	if m := modelname.FromPath(path); m != "" {
		return m
	}
	if boundary := modelname.Boundary(contentType); boundary != "" {
		return modelname.FromMultipart(b.reader(), boundary)
	}
	return modelname.FromBody(b.forModel())
}

// Close removes the temporary file, if any.
func (b *body) Close() error {
	if b == nil || b.file == nil {
		return nil
	}
	var err error
	b.closeOnce.Do(func() {
		err = b.file.Close()
		if !removedAtCreate {
			os.Remove(b.file.Name())
		}
	})
	return err
}

// removedAtCreate: on Unix a spool file is unlinked as soon as it is
// created, so it disappears with its descriptor whatever happens to the
// process (even a kill -9); Windows cannot remove an open file, so there
// Close removes it.
var removedAtCreate = runtime.GOOS != "windows"

// readBody reads r to its end into a body: into memory while it fits in
// memLimit, then into a temporary file (mode 0600, in os.TempDir). More
// than maxSize bytes is errBodyTooLarge. On error nothing is left behind.
// sizeHint, the declared Content-Length (-1: unknown), only sizes the
// first buffer, and never beyond firstChunk: the common small body is
// read in one allocation of its own size.
func readBody(r io.Reader, sizeHint, memLimit, maxSize int64) (*body, error) {
	b := &body{}
	first := int64(firstChunk)
	if sizeHint > 0 && sizeHint < first {
		first = sizeHint
	}
	buf := make([]byte, 0, min(first, memLimit))
	var probe [1]byte
	for {
		if len(buf) == cap(buf) {
			// Full: look for one more byte before growing, so a body
			// that fills the buffer exactly costs no second buffer.
			n, err := readSome(r, probe[:])
			if n == 0 {
				if err == io.EOF {
					b.mem, b.size = buf, int64(len(buf))
					return b, nil
				}
				return nil, err
			}
			if int64(len(buf))+1 > maxSize {
				return nil, errBodyTooLarge
			}
			if int64(cap(buf)) >= memLimit {
				break // memory is full: the rest goes to a file
			}
			grown := make([]byte, len(buf), min(max(2*int64(cap(buf)), firstChunk), memLimit))
			copy(grown, buf)
			buf = append(grown, probe[0])
			continue
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > maxSize {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			b.mem, b.size = buf, int64(len(buf))
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
	r = io.MultiReader(bytes.NewReader(probe[:]), r)
	// The memory limit is reached and more may follow: spool.
	f, err := os.CreateTemp("", spoolPrefix+"*")
	if err != nil {
		return nil, &spoolError{err}
	}
	if removedAtCreate {
		os.Remove(f.Name())
	}
	b.file = f
	if _, err := f.Write(buf); err != nil {
		b.Close()
		return nil, &spoolError{err}
	}
	size := int64(len(buf))
	buf = nil // the in-memory part can go while the rest arrives
	cp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(cp)
	// onlyWriter hides f's ReadFrom, which would bypass the pooled buffer
	// with one of its own.
	n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(r, maxSize+1-size), *cp)
	size += n
	if err != nil {
		b.Close()
		return nil, err
	}
	if size > maxSize {
		b.Close()
		return nil, errBodyTooLarge
	}
	b.size = size
	return b, nil
}

// readSome reads into p until it gets a byte or an error (a reader may
// return 0, nil).
func readSome(r io.Reader, p []byte) (int, error) {
	for {
		n, err := r.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// copyBufs are the buffers bodies are spooled through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// onlyWriter also tells the file's write errors from the client's read
// errors, which io.CopyBuffer returns alike.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = &spoolError{err}
	}
	return n, err
}

// isBodyTimeout reports whether err is the server's read deadline expiring
// while the body was being read (SERVER_READ_TIMEOUT): the client stalled.
func isBodyTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
