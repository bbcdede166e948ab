package proxy

import (
	"log"
	"math"
	"net/url"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }

func ceilSeconds(t time.Time) float64 { return math.Ceil(time.Until(t).Seconds()) }

// newStdLogger adapts logrus for net/http's *log.Logger hooks.
func newStdLogger(l *logrus.Entry, level logrus.Level) *log.Logger {
	return log.New(l.WriterLevel(level), "", 0)
}

// bufferPool recycles ReverseProxy's copy buffers, which would otherwise
// cost 32 KiB of garbage per response.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }
