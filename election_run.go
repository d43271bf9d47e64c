package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Run campaigns until ctx ends: it waits for the election's lock (Acquire
// with Expires(TTL)), and each time this member wins it calls lead with
// the term and a context that is cancelled, with cause ErrLockLost, the
// moment leadership is in doubt: the lock found taken, not renewed in
// time, or past its safe deadline when the context is checked (a process
// resumed from a pause sees it done at once), or Resign called. Once lead
// returns it releases the lock, waking the waiting members, and campaigns
// again; after a Resign it first stands aside (standAside: two seconds,
// or the TTL if shorter), so that another member, woken by the release or
// polling at most every second, takes over.
//
// When ctx ends, lead's context is cancelled too, and Run waits for lead
// to return before it releases the lock, then returns ctx's error: the
// next leader's work never overlaps this one's. An error lead returns is
// returned at once, after the release, unless lead's context had ended
// and the error is that context's (context.Canceled, DeadlineExceeded or
// ErrLockLost), which is a term ending as it should. Errors from the
// database while campaigning are logged and retried; ErrSchema,
// ErrInvalidOption and ErrUnsupportedEngine are returned. One Run at a
// time per Election: a second is ErrInvalidOption.
func (e *Election) Run(ctx context.Context, lead func(ctx context.Context, t Term) error) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if lead == nil {
		return fmt.Errorf("%w: Election.Run: nil lead function", ErrInvalidOption)
	}
	if !e.begin() {
		return fmt.Errorf("%w: Election %q is already running", ErrInvalidOption, e.name)
	}
	defer e.finish()
	for {
		s, err := e.campaign(ctx)
		if err != nil {
			return err
		}
		resigned, err := e.serve(s, lead)
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case resigned:
			if sleep(ctx, min(e.ttl, standAside)) != nil {
				return ctx.Err()
			}
		}
	}
}

func (e *Election) begin() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return false
	}
	e.running = true
	return true
}

func (e *Election) finish() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running = false
}

// campaign waits until this member holds the election's lock, or ctx ends.
func (e *Election) campaign(ctx context.Context) (*Scope, error) {
	for {
		s, err := e.m.Acquire(ctx, e.name, Expires(e.ttl), Wait(e.ttl), LockedBy(e.identity))
		switch {
		case err == nil:
			return s, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrLocked):
			continue
		case errors.Is(err, ErrSchema), errors.Is(err, ErrInvalidOption), errors.Is(err, ErrUnsupportedEngine):
			return nil, err
		}
		e.m.warn(ctx, "lockmgr: election campaign failed, retrying", e.name, err)
		if sleep(ctx, jitter(e.ttl/3)) != nil {
			return nil, ctx.Err()
		}
	}
}

// serve runs one term: lead, then the release. It returns lead's error
// when that ends Run, and whether the term ended with a Resign.
func (e *Election) serve(s *Scope, lead func(ctx context.Context, t Term) error) (resigned bool, err error) {
	main := s.Main()
	ts := &term{t: Term{Identity: main.LockedBy, Fence: main.Fence, Since: main.CreatedAt}, scope: s, done: make(chan struct{})}
	e.mu.Lock()
	e.term = ts
	e.mu.Unlock()
	observers.nudge(e.key())
	_, end := e.m.begin(s.parent, "term", e.name) // a span of the term, not lead's context: see Scope.Context
	defer func() { end(main, err) }()
	defer func() {
		r := recover()
		if cerr := s.Close(); cerr != nil && !errors.Is(cerr, ErrLockLost) {
			e.m.warn(context.WithoutCancel(s.parent), "lockmgr: election release failed; the lock expires by itself", e.name, cerr)
		}
		e.mu.Lock()
		e.term = nil
		resigned = ts.resigned
		e.mu.Unlock()
		close(ts.done)
		observers.nudge(e.key())
		if r != nil {
			panic(r)
		}
	}()
	err = lead(s.Context(), ts.t)
	if err != nil && s.Context().Err() != nil && termEnded(err) {
		err = nil
	}
	return false, err
}

// termEnded reports an error that is lead's context ending.
func termEnded(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrLockLost)
}

// standAside is how long a member that resigned waits before it
// campaigns again (or its TTL, if shorter): longer than a waiting
// member's longest backoff (a second), so that one of them takes over.
const standAside = 2 * time.Second

// errResigned is the cause of a lead context that Resign cancelled.
var errResigned = fmt.Errorf("%w: the leader resigned", ErrLockLost)

// Resign makes this member step down if it leads: it cancels lead's
// context (cause ErrLockLost), waits for lead to return, and releases the
// lock, waking the waiting members at once, so that another member leads
// within a moment rather than after the TTL. If ctx ends first it releases
// the lock without waiting further: called from lead itself, pass lead's
// context, which Resign has just cancelled, and it releases at once. The
// member then stands aside for a moment (see Run) before it campaigns
// again. Without
// a term to resign it does nothing. It returns a release error, if any.
func (e *Election) Resign(ctx context.Context) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	ts := e.term
	if ts != nil {
		ts.resigned = true
	}
	e.mu.Unlock()
	if ts == nil {
		return nil
	}
	ts.scope.cancel(errResigned)
	select {
	case <-ts.done:
		return nil
	case <-ctx.Done():
	}
	if err := ts.scope.Close(); err != nil && !errors.Is(err, ErrLockLost) {
		return err
	}
	observers.nudge(e.key())
	return nil
}
