package chaos

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/gpt-load/gpt-load/internal/procstat"
)

// rss reads the process's anonymous resident memory (RssAnon) from
// /proc/self/status: the heap, stacks and the runtime's own, without the
// binary's pages (RssFile), which grow once as code runs for the first
// time (a gzip writer, an error path) and say nothing of what a request
// kept. VmRSS, everything resident, where RssAnon is missing (Linux
// before 4.5).
func rss() (uint64, error) {
	n, err := procstat.Field(0, "RssAnon")
	if err != nil && !errors.Is(err, procstat.ErrUnsupported) {
		n, err = procstat.RSS(0)
	}
	return uint64(max(n, 0)), err
}

// settled collects garbage, returns freed memory to the system and reads
// RSS and the live heap.
func settled() (rssNow, heap uint64) {
	r, h, _ := settledDetail()
	return r, h
}

// settledDetail is settled with the runtime's own account of the
// anonymous memory besides the live heap, for a report: the heap's spans
// in use (live heap and fragmentation), goroutine stacks, span
// structures, GC metadata and the rest.
func settledDetail() (rssNow, heap uint64, detail string) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r, _ := rss()
	detail = fmt.Sprintf("heap in use %.1f, stacks %.1f, spans %.1f, GC metadata %.1f, other %.1f MiB; %d goroutines",
		mib(ms.HeapInuse), mib(ms.StackInuse), mib(ms.MSpanInuse), mib(ms.GCSys), mib(ms.OtherSys), runtime.NumGoroutine())
	return r, ms.HeapAlloc, detail
}

// memoryAfter reads memory once the clients stopped, again every 250 ms
// for up to 5 s while it is over its slack (connections and
// handlers still winding down, the scavenger catching up); the last
// reading counts.
func memoryAfter(m *Memory) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.RSSAfter, m.HeapAfter, m.DetailAfter = settledDetail()
		if len(checkMemory(*m)) == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
