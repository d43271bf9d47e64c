package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Renew renews the scope's main lock, owner-checked, with django-lockmgr's
// LockMgr.renew defaults: Expires(DefaultScopeRenew), AddTime, Create —
// so a main lock that expired, or was released with Unlock, is taken anew
// (and released at Close like the rest). NoCreate makes it fail with
// ErrNotHeld instead. It returns ErrLocked if someone else holds the name.
func (s *Scope) Renew(ctx context.Context, opts ...LockOption) (*Lock, error) {
	c, err := newLockConfig(append([]LockOption{Expires(DefaultScopeRenew), AddTime(), Create()}, opts...))
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
	s.renewed(main.Token, nl, sent.Add(c.expires), true)
	return nl, nil
}

// renewed records a renewal of the main lock held with token, unless the
// main lock has changed since. deadline is when, by this process's clock,
// the renewed lock lasts at least until.
func (s *Scope) renewed(token string, nl *Lock, deadline time.Time, replace bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (!replace && s.main.Token != token) {
		return
	}
	if nl.Token != s.main.Token || deadline.After(s.deadline) {
		s.deadline = deadline
	}
	if nl.LockedUntil == nil {
		s.deadline = time.Now().Add(100 * 365 * 24 * time.Hour)
	}
	s.main = nl
}

// keepAlive renews the main lock every `every`, retrying failures sooner,
// and declares the lock lost when a renewal finds it taken, or when no
// renewal has succeeded and the lock's expiry is within a fifth of its
// length — before anyone else could take it.
func (s *Scope) keepAlive(ctx context.Context, every, expires time.Duration) {
	defer close(s.kaDone)
	margin := expires / 5
	timer := time.NewTimer(every)
	defer timer.Stop()
	next := every
	for {
		s.mu.Lock()
		lostAt, main := s.deadline.Add(-margin), s.main
		s.mu.Unlock()
		left := time.Until(lostAt)
		if left <= 0 {
			s.lose(fmt.Errorf("no renewal succeeded in time"))
			return
		}
		timer.Reset(min(next, left/2))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if main.Token == "" || time.Now().After(lostAt) {
			continue // released with Unlock, or out of time: decided above
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, lostAt)
		nl, err := s.m.renewToken(rctx, main, &lockConfig{expires: expires})
		cancel()
		switch {
		case err == nil:
			s.renewed(main.Token, nl, sent.Add(expires), false)
			next = every
		case errors.Is(err, ErrNotHeld):
			s.lose(err)
			return
		case ctx.Err() != nil:
			return
		default:
			s.m.warn(ctx, "lockmgr: keep-alive renewal failed, retrying", main.Name, err)
			next = max(10*time.Millisecond, time.Until(lostAt)/4)
		}
	}
}

// lose marks the main lock lost and cancels the scope's context.
func (s *Scope) lose(why error) {
	s.mu.Lock()
	if s.lost || s.closed {
		s.mu.Unlock()
		return
	}
	s.lost = true
	l := *s.main
	s.mu.Unlock()
	s.cancel(ErrLockLost)
	s.m.warn(s.ctx, "lockmgr: lock lost", l.Name, why)
	if s.m.hooks.OnLost != nil {
		s.m.hooks.OnLost(&l, time.Since(s.start))
	}
}

// stopKeepAlive stops the keep-alive goroutine and waits until it has.
func (s *Scope) stopKeepAlive() {
	if s.stopKA != nil {
		s.stopKA()
		<-s.kaDone
	}
}

// Close releases every lock the scope holds, owner-checked, on a fresh
// context bounded by DefaultReleaseTimeout (so a cancelled caller still
// cleans up), stops the keep-alive and cancels Context. It returns an error
// matching ErrLockLost if the main lock was lost, and any release error.
// A Close called again, or concurrently (the scope also closes itself when
// its context ends), waits for the first to finish and returns its result:
// when Close returns, the scope's locks are released.
func (s *Scope) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Scope) close() error {
	s.mu.Lock()
	s.closed = true
	main, extra, lost, stopWake := s.main, s.extra, s.lost, s.stopWake
	s.extra = nil
	s.mu.Unlock()
	stopWake()
	s.stopKeepAlive()
	defer s.cancel(context.Canceled)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.parent), DefaultReleaseTimeout)
	defer cancel()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if err := s.m.Release(ctx, extra[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if main.Token != "" {
		err := s.m.Release(ctx, main)
		lost = lost || errors.Is(err, ErrNotHeld)
		if err != nil && !errors.Is(err, ErrNotHeld) {
			errs = append(errs, err)
		}
	}
	if lost {
		errs = append(errs, fmt.Errorf("%w: %q", ErrLockLost, main.Name))
	}
	return errors.Join(errs...)
}
