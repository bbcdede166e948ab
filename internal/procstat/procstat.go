// Package procstat reads a process's memory figures from Linux's
// /proc/PID/status, for tests and tools that measure the memory a real
// process holds (resident, not only the Go heap).
package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrUnsupported is returned where /proc cannot be read (not Linux).
var ErrUnsupported = errors.New("procstat: no /proc here")

// Field returns the named field of /proc/PID/status ("VmRSS", "RssAnon",
// …) in bytes; pid 0 is this process. It returns ErrUnsupported (wrapped)
// when /proc cannot be read, and an error naming the field when the file
// lacks it.
func Field(pid int, name string) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: %s line %q: %w", name, line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("procstat: no %s in %s", name, path)
}

// RSS is the process's resident memory (VmRSS) in bytes; pid 0 is this
// process.
func RSS(pid int) (int64, error) { return Field(pid, "VmRSS") }
