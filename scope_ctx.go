package lockmgr

import (
	"context"
	"errors"
	"math"
	"time"
)

// noDeadline is a scope's safeUntil while none of its locks expires.
const noDeadline = math.MaxInt64

// leaseCtx is a scope's Context. Its Err and Done first compare this
// process's monotonic clock with the earliest safe deadline of the scope's
// locks (the instant the keep-alive would declare one lost), and past it
// declare those locks lost, cancelling the context with cause ErrLockLost,
// before they answer. So a process resumed from a pause (a GC stall,
// SIGSTOP, a frozen VM) sees its context done at its first check, even
// before the keep-alive goroutine has run again; Done is closed whenever
// Err is non-nil, as the context contract requires. Contexts derived from
// it are cancelled by the keep-alive, a moment later: check this one.
type leaseCtx struct {
	context.Context // the cancelCtx of the scope (context.WithCancelCause)
	s               *Scope
}

// Done checks the scope's safe deadline, then returns the channel.
func (c *leaseCtx) Done() <-chan struct{} {
	c.s.checkDeadline()
	return c.Context.Done()
}

// Err checks the scope's safe deadline, then returns the context's error.
func (c *leaseCtx) Err() error {
	c.s.checkDeadline()
	return c.Context.Err()
}

// lostAt is when the scope can no longer be sure of h: its expiry as the
// scope knows it, less a fifth of its length when it is kept alive, so
// that the loss is declared before anyone else could take the lock.
func (h *held) lostAt() time.Time {
	if h.every > 0 {
		return h.deadline.Add(-h.expires / 5)
	}
	return h.deadline
}

// resetSafe recomputes the scope's earliest safe deadline; s.mu is held.
func (s *Scope) resetSafe() {
	safe := int64(noDeadline)
	for _, h := range s.held {
		if h.lock.LockedUntil != nil && h.guards == 0 { // a guarding transaction holds its row (guard.go)
			safe = min(safe, int64(h.lostAt().Sub(s.epoch)))
		}
	}
	s.safeUntil.Store(safe)
}

// checkDeadline declares lost, synchronously, every lock of the scope
// past its safe deadline. Its fast path is one atomic load and a reading
// of the monotonic clock.
func (s *Scope) checkDeadline() {
	if d := s.safeUntil.Load(); d == noDeadline || time.Since(s.epoch) < time.Duration(d) {
		return
	}
	now := time.Now()
	s.mu.Lock()
	var overdue []errand
	for name, h := range s.held {
		if h.lock.LockedUntil != nil && h.guards == 0 && !now.Before(h.lostAt()) {
			overdue = append(overdue, errand{name: name, lock: h.lock})
		}
	}
	s.mu.Unlock()
	for _, e := range overdue {
		s.lose(e.name, e.lock, errLeasePast)
	}
}

// holds reports whether the scope still holds its main lock as far as it
// knows: not lost, not past its safe deadline, not unlocked or closed —
// whether or not its context was cancelled otherwise.
func (s *Scope) holds() bool {
	s.checkDeadline()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[s.main.Name]
	return !s.closed && h != nil && s.main.Token != "" && h.lock.Token == s.main.Token
}

var errLeasePast = errors.New("its safe deadline passed before a renewal succeeded (the process was paused or starved)")
