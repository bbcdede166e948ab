package chaos

import (
	"bufio"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// rss reads the process's anonymous resident memory (RssAnon) from
// /proc/self/status: the heap, stacks and the runtime's own, without the
// binary's pages (RssFile), which grow once as code runs for the first
// time (a gzip writer, an error path) and say nothing of what a request
// kept. VmRSS, everything resident, where RssAnon is missing (Linux
// before 4.5).
func rss() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var vm uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, _ := strings.Cut(sc.Text(), ":")
		if name != "RssAnon" && name != "VmRSS" {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, err
		}
		if name == "RssAnon" {
			return kb << 10, nil
		}
		vm = kb << 10
	}
	if vm == 0 {
		return 0, errors.New("no RssAnon or VmRSS in /proc/self/status")
	}
	return vm, nil
}

// settled collects garbage, returns freed memory to the system and reads
// RSS and the live heap.
func settled() (rssNow, heap uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r, _ := rss()
	return r, ms.HeapAlloc
}

// memoryAfter reads memory once the clients stopped, again every 250 ms
// for up to 5 s while it is over the baseline's slack (connections and
// handlers still winding down, the scavenger catching up); the last
// reading counts.
func memoryAfter(m *Memory) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.RSSAfter, m.HeapAfter = settled()
		if len(checkMemory(*m)) == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
