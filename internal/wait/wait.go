// Package wait waits for a time or a context, whichever comes first, for
// the measuring tools that play scripted timelines (the provider
// simulator, the scenario runner, the chaos harness).
package wait

import (
	"context"
	"time"
)

// Until waits until at and reports true, or returns false as soon as ctx
// ends.
func Until(ctx context.Context, at time.Time) bool {
	tm := time.NewTimer(time.Until(at))
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
