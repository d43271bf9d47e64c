package lockmgr

import (
	"context"
	"math/rand/v2"
	"time"
)

// minBackoff is the first step of lockmgr's retry backoffs.
const minBackoff = 2 * time.Millisecond

// sleep waits for d or until ctx ends, whose error it then returns.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
