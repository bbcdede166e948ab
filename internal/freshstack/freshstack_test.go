package freshstack_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/freshstack"
)

// deep recurses n frames of about 1 KB each, so the goroutine it runs on
// needs n KB of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%len(pad)]
}

// TestCallsRunElsewhere: Run and Call run f on another goroutine, return
// after it, and what f set is seen by the caller.
func TestCallsRunElsewhere(t *testing.T) {
	for name, run := range map[string]func(func()){"Run": freshstack.Run, "Call": freshstack.Call} {
		t.Run(name, func(t *testing.T) {
			caller := goroutineID()
			var inside uint64
			var got byte
			run(func() {
				inside = goroutineID()
				got = deep(32) // 32 KB deep: not the caller's stack
			})
			if inside == caller || inside == 0 {
				t.Errorf("f ran on goroutine %d, the caller's is %d; want another", inside, caller)
			}
			if got != deep(32) {
				t.Errorf("f's result %d not seen after %s returned", got, name)
			}
		})
	}
}

// TestPanicReachesCaller: a panic in f is raised in the caller, with its
// value, so the server's recovery sees it (as http.ErrAbortHandler, say).
func TestPanicReachesCaller(t *testing.T) {
	for name, run := range map[string]func(func()){"Run": freshstack.Run, "Call": freshstack.Call} {
		t.Run(name, func(t *testing.T) {
			want := errors.New("boom")
			got := func() (v any) {
				defer func() { v = recover() }()
				run(func() { panic(want) })
				return nil
			}()
			if got != want {
				t.Fatalf("recovered %v in the caller; want %v", got, want)
			}
			// The goroutines kept for Call survive a panic: calls go on.
			ran := false
			run(func() { ran = true })
			if !ran {
				t.Fatal("a call after the panic did not run")
			}
		})
	}
}

// TestCallNeverWaitsForABusyWorker: more concurrent calls than goroutines
// kept for them all run at once (each waits until all have started), so
// a call never queues behind another; and a call made inside a call runs.
func TestCallNeverWaitsForABusyWorker(t *testing.T) {
	const n = 40 // past the workers kept
	var started sync.WaitGroup
	started.Add(n)
	allIn := make(chan struct{})
	go func() { started.Wait(); close(allIn) }()
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			freshstack.Call(func() {
				started.Done()
				select {
				case <-allIn:
				case <-time.After(10 * time.Second):
					t.Error("a call waited 10 s for the others to start: calls were queued")
				}
				nested := false
				freshstack.Call(func() { nested = true })
				if !nested {
					t.Error("a call made inside a call did not run")
				}
			})
		})
	}
	done.Wait()
}

// goroutineID reads the running goroutine's number from its stack trace's
// first line ("goroutine 18 [running]:").
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	var id uint64
	for _, c := range b[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
