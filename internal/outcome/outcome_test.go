package outcome_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gpt-load/gpt-load/internal/outcome"
)

// TestCountersAddUp: records finished from many goroutines at once add up
// to the totals, each counted as a success (2xx, 3xx) or a failure.
func TestCountersAddUp(t *testing.T) {
	var c outcome.Counters
	statuses := []int{200, 204, 302, 399, 400, 429, 499, 500, 503, 101, 0}
	const perStatus = 200
	var wg sync.WaitGroup
	for _, status := range statuses {
		for range perStatus {
			wg.Go(func() {
				c.Started()
				if status == 429 {
					c.Retried()
				}
				c.Finished(&outcome.Record{Status: status})
			})
		}
	}
	wg.Wait()
	got := c.Totals()
	want := outcome.Totals{Total: int64(len(statuses) * perStatus), Success: 4 * perStatus,
		Failure: int64(len(statuses)-4) * perStatus, Retries: perStatus}
	if got != want {
		t.Errorf("Totals() = %+v; want %+v", got, want)
	}
	if d := got.Sub(outcome.Totals{Total: 1, Success: 2, Failure: 3, Retries: 4}); d != (outcome.Totals{
		Total: want.Total - 1, Success: want.Success - 2, Failure: want.Failure - 3, Retries: want.Retries - 4}) {
		t.Errorf("Sub = %+v", d)
	}
}

func TestRecordInContext(t *testing.T) {
	if r := outcome.FromContext(context.Background()); r != nil {
		t.Errorf("FromContext of a bare context = %v; want nil", r)
	}
	rec := &outcome.Record{}
	ctx := outcome.NewContext(context.Background(), rec)
	if got := outcome.FromContext(ctx); got != rec {
		t.Errorf("FromContext = %p; want the record put in (%p)", got, rec)
	}
	if rec.TargetHost() != "" {
		t.Errorf("TargetHost of a record without a target = %q; want empty", rec.TargetHost())
	}
}
