//go:build !linux

package reliability

import "time"

// monoNow falls back to the wall clock where CLOCK_MONOTONIC is not at
// hand; holds are still ordered unless the clock steps during a run.
func monoNow() int64 { return time.Now().UnixNano() }
