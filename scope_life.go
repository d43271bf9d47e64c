package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Renew renews the scope's main lock, owner-checked, with django-lockmgr's
// LockMgr.renew defaults: Expires(DefaultScopeRenew), AddTime, Create —
// so a main lock that expired, or was released with Unlock, is taken anew
// (kept alive, and released at Close, like the rest). NoCreate makes it
// fail with ErrNotHeld instead. It returns ErrLocked if someone else holds
// the name.
func (s *Scope) Renew(ctx context.Context, opts ...LockOption) (*Lock, error) {
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	c, err := newLockConfig("Scope.Renew", scopeRenewOpts, append([]LockOption{Expires(DefaultScopeRenew), AddTime(), Create()}, opts...))
	if err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	main := s.Main()
	sent := time.Now()
	var nl *Lock
	if main.Token != "" { // "" after Unlock
		nl, err = s.m.renewToken(ctx, main, &c)
	}
	if main.Token == "" || errors.Is(err, ErrNotHeld) {
		if !flag(c.create, true) {
			return nil, notHeldError(main.Name)
		}
		nl, err = s.m.recreate(ctx, main, &c)
	}
	if err != nil {
		return nil, err
	}
	s.renewed(main.Name, main.Token, nl, sent, c.expires, true)
	return nl, nil
}

// renewed records a renewal of the scope's lock name, held with token, by
// a request sent at sent for expires, unless the lock has changed since.
// A main lock taken anew (replace) is held, and kept alive, again.
func (s *Scope) renewed(name, token string, nl *Lock, sent time.Time, expires time.Duration, replace bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[name]
	if s.closed || !replace && (h == nil || h.lock.Token != token) {
		return
	}
	if h == nil || h.lock.Token != nl.Token {
		c := s.defaults
		c.expires = max(expires, s.defaults.expires)
		h = newHeld(nl, sent, &c)
		s.held[name] = h
	} else if d := sent.Add(expires); d.After(h.deadline) {
		h.deadline = d
	}
	h.lock = nl
	s.resetSafe()
	if s.main.Name == name {
		s.main = nl
	}
	s.poke()
}

// An errand is what the tending goroutine does next to one lock.
type errand struct {
	name   string
	lock   *Lock
	renew  bool      // renew it (else it is lost)
	lostAt time.Time // when it can no longer be sure of it
	h      *held
}

// tend renews each lock of the scope when due, retrying failures sooner,
// and declares a lock lost when a renewal finds it taken, or when no
// renewal has succeeded and its expiry is within a fifth of its length —
// before anyone else could take it; a lock not kept alive (NoKeepAlive)
// is lost when its expiry as the scope knows it arrives.
func (s *Scope) tend() {
	defer close(s.tendDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		todo, wait := s.errands(time.Now())
		for _, e := range todo {
			if !e.renew {
				s.lose(e.name, e.lock, errors.New("no renewal succeeded in time"))
				continue
			}
			if s.renewOne(e) {
				return
			}
		}
		if len(todo) > 0 {
			continue // look again at once: time passed meanwhile
		}
		timer.Reset(wait)
		select {
		case <-s.tendCtx.Done():
			return
		case <-s.nudge: // timer.Reset above discards a stale expiry (Go 1.23+ timers)
		case <-timer.C:
		}
	}
}

// errands lists what is due at now, and how long until something is.
func (s *Scope) errands(now time.Time) (todo []errand, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait = time.Hour
	for _, name := range slices.Sorted(maps.Keys(s.held)) {
		h := s.held[name]
		if h.lock.LockedUntil == nil || h.guards > 0 {
			continue // never expires, or renewed by the guarding transaction (guard.go)
		}
		lostAt := h.lostAt()
		switch {
		case !now.Before(lostAt):
			todo = append(todo, errand{name: name, lock: h.lock, lostAt: lostAt, h: h})
		case h.every > 0 && !now.Before(h.next):
			todo = append(todo, errand{name: name, lock: h.lock, renew: true, lostAt: lostAt, h: h})
		default:
			wait = min(wait, lostAt.Sub(now)/2+time.Millisecond)
			if h.every > 0 {
				wait = min(wait, h.next.Sub(now))
			}
		}
	}
	return todo, max(wait, time.Millisecond)
}

// renewOne runs one keep-alive renewal; it reports whether tending must stop.
func (s *Scope) renewOne(e errand) (stop bool) {
	sent := time.Now()
	rctx, cancel := context.WithDeadline(s.tendCtx, e.lostAt)
	rctx, end := s.m.begin(rctx, "keep_alive", e.name)
	nl, err := s.m.renewToken(rctx, e.lock, &lockConfig{expires: e.h.expires})
	end(nl, err)
	cancel()
	switch {
	case err == nil:
		s.renewed(e.name, e.lock.Token, nl, sent, e.h.expires, false)
		s.mu.Lock()
		e.h.next = sent.Add(e.h.every)
		s.mu.Unlock()
	case errors.Is(err, ErrNotHeld):
		s.lose(e.name, e.lock, err)
	case s.tendCtx.Err() != nil:
		return true
	default:
		s.m.warn(s.tendCtx, "lockmgr: keep-alive renewal failed, retrying", e.name, err)
		s.mu.Lock()
		e.h.next = time.Now().Add(max(10*time.Millisecond, time.Until(e.lostAt)/4))
		s.mu.Unlock()
	}
	return false
}

// lose marks the scope's lock l lost and cancels the scope's context.
func (s *Scope) lose(name string, l *Lock, why error) {
	s.mu.Lock()
	if h := s.held[name]; s.closed || h == nil || h.lock.Token != l.Token {
		s.mu.Unlock()
		return
	}
	// Cancel before the lock leaves held: a check of the context (scope_ctx.go)
	// in between would find no deadline and a context not yet done.
	s.cancel(fmt.Errorf("%w: %q", ErrLockLost, name))
	delete(s.held, name)
	s.resetSafe()
	s.lost = append(s.lost, name)
	s.mu.Unlock()
	s.m.warn(s.ctx, "lockmgr: lock lost", name, why)
	if s.m.hooks.OnLost != nil {
		s.m.hooks.OnLost(l, time.Since(s.start))
	}
}

// Close releases every lock the scope holds, owner-checked, on a fresh
// context bounded by the Manager's release timeout (DefaultReleaseTimeout
// unless WithReleaseTimeout; so a cancelled caller still cleans up),
// stops the keep-alive and cancels Context. It returns an error matching
// ErrLockLost if a lock of the scope was lost, and any release error.
// A Close called again, or concurrently, waits for the first to finish and
// returns its result: when Close returns, the scope's locks are released.
func (s *Scope) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Scope) close() error {
	s.mu.Lock()
	s.closed = true
	held, lost, mainName := s.held, slices.Clone(s.lost), s.main.Name
	s.cancel(context.Canceled) // before the locks leave held, as in lose
	s.held = nil
	s.safeUntil.Store(noDeadline)
	s.mu.Unlock()
	s.stopTend()
	<-s.tendDone
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.parent), s.m.release)
	defer cancel()
	var errs []error
	names := slices.Sorted(maps.Keys(held))
	// The main lock last: what was taken under it is let go first.
	slices.SortStableFunc(names, func(a, b string) int { return boolCmp(a == mainName, b == mainName) })
	for _, name := range names {
		err := s.m.Release(ctx, held[name].lock)
		switch {
		case errors.Is(err, ErrNotHeld):
			lost = append(lost, name)
		case err != nil:
			errs = append(errs, err)
		}
	}
	if len(lost) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrLockLost, quoteAll(lost)))
	}
	return errors.Join(errs...)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
