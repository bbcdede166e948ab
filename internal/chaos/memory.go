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

// rss reads the process's resident set size from /proc/self/status.
func rss() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
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
