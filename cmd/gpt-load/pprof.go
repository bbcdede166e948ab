//go:build pprof

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"runtime"
	"strconv"
)

// Built with -tags pprof, gpt-load serves Go's profiler on PPROF_ADDR
// (default 127.0.0.1:6060), for profiling under load. Release builds have
// no such listener. PPROF_MEMRATE sets runtime.MemProfileRate (bytes per
// heap sample; 1 records every allocation) for an exact heap profile.
func init() {
	if n, err := strconv.Atoi(os.Getenv("PPROF_MEMRATE")); err == nil && n > 0 {
		runtime.MemProfileRate = n
	}
	addr := os.Getenv("PPROF_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	go http.ListenAndServe(addr, nil)
}
