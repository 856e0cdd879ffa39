// Package pace holds what the jepsen workloads' clients share to pace their operations.
package pace

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
