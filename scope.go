package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Scope holds a main lock, and any further locks taken through it, until
// Close (django-lockmgr's LockMgr). While open it renews every lock it
// holds in the background (unless NoKeepAlive) and cancels Context with
// cause ErrLockLost if any of them is lost — found taken by a renewal, or
// not renewed in time to be sure it is still held; with NoKeepAlive, when
// a lock's expiry as the scope knows it arrives. A Scope's methods are
// safe for concurrent use.
type Scope struct {
	m        *Manager
	defaults lockConfig // for extra locks: the scope's expiry, wait, holder and keep-alive
	ctx      context.Context
	cancel   context.CancelCauseFunc
	parent   context.Context
	start    time.Time

	// The safe deadline Context checks itself (scope_ctx.go).
	epoch     time.Time    // a monotonic reading: safeUntil counts from it
	safeUntil atomic.Int64 // nanoseconds after epoch when the first lock is past its safe deadline

	// The tending goroutine (scope_life.go): renews what is due, declares
	// lost what ran out of time.
	tendCtx  context.Context
	stopTend context.CancelFunc
	tendDone chan struct{}
	nudge    chan struct{} // capacity 1: the held set changed

	mu     sync.Mutex
	main   *Lock            // the main lock as last acquired or renewed; Token "" after Unlock
	held   map[string]*held // every lock the scope holds, the main one included
	lost   []string         // names of the locks found lost, in order
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// held is one lock of a scope and what keeps it.
type held struct {
	lock     *Lock
	deadline time.Time     // by this process's monotonic clock, the lock lasts at least until then
	expires  time.Duration // what a keep-alive renewal asks for
	every    time.Duration // how often it is renewed; 0: never (NoKeepAlive)
	next     time.Time     // when it is renewed next
	// guards counts the open Scope.Transactions guarding the lock (guard.go):
	// their transaction holds its row, so the keep-alive leaves it alone.
	guards int
}

// Do takes name (waiting as Wait allows), runs fn with a context that is
// cancelled with cause ErrLockLost if a lock of the scope is lost, and
// releases every lock the scope holds once fn has returned, failed or
// panicked (the panic is re-raised after the release). When ctx ends, fn's
// context is cancelled but the locks stay held, and kept alive, until fn
// returns: a replica told to stop keeps its lock until its work has
// stopped. It returns fn's error, joined with ErrLockLost if a lock was
// lost meanwhile and with any release error; ErrLocked if name could not
// be taken.
func (m *Manager) Do(ctx context.Context, name string, fn func(ctx context.Context, s *Scope) error, opts ...LockOption) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidOption)
	}
	s, err := m.Acquire(ctx, name, opts...)
	if err != nil {
		return err
	}
	return s.run(fn)
}

// run runs fn with s and closes s once fn has returned, failed or
// panicked (the panic is re-raised after the release): fn's error joined
// with Close's.
func (s *Scope) run(fn func(ctx context.Context, s *Scope) error) (err error) {
	defer func() {
		r := recover()
		err = errors.Join(err, s.Close())
		if r != nil {
			panic(r)
		}
	}()
	return fn(s.Context(), s)
}

// Acquire takes name (waiting as Wait allows) and returns a Scope holding
// it; call Close when done, typically with defer. The Scope's Context is
// derived from ctx, but ctx's end does not release anything: the locks
// stay held, and kept alive, until Close, so that the caller's work never
// runs unprotected; a Scope that is never closed holds its locks for good.
// It returns ErrLocked if name could not be taken, and ErrInvalidOption
// on a Manager bound to a transaction (WithTx), whose connection a
// scope's keep-alive and releases cannot share.
func (m *Manager) Acquire(ctx context.Context, name string, opts ...LockOption) (*Scope, error) {
	c, err := prepare(ctx, "Acquire", scopeOptions, name, opts)
	if err != nil {
		return nil, err
	}
	if m.err == nil && m.inCallerTx() {
		return nil, fmt.Errorf("%w: Do and Acquire cannot run inside the caller's transaction (WithTx, or New given a transaction): "+
			"take the lock with a Manager outside it, or use GetLock and Release", ErrInvalidOption)
	}
	l, sent, err := m.acquire(ctx, name, &c)
	if err != nil {
		return nil, err
	}
	s := &Scope{m: m, defaults: c, parent: ctx, main: l, held: map[string]*held{}, start: sent, epoch: sent,
		nudge: make(chan struct{}, 1), tendDone: make(chan struct{})}
	s.defaults.lockedBy, s.defaults.process = &l.LockedBy, l.LockProcess
	s.defaults.hold = 0 // HoldAtLeast is the main lock's own (l remembers it), not the scope's other locks'
	inner, cancel := context.WithCancelCause(ctx)
	s.ctx, s.cancel = &leaseCtx{Context: inner, s: s}, cancel
	s.held[name] = newHeld(l, sent, &c)
	s.resetSafe()
	s.tendCtx, s.stopTend = context.WithCancel(context.WithoutCancel(ctx))
	go s.tend()
	return s, nil
}

// newHeld is a lock acquired (or renewed) by a request sent at sent.
func newHeld(l *Lock, sent time.Time, c *lockConfig) *held {
	h := &held{lock: l, deadline: sent.Add(c.expires), expires: c.expires}
	if !c.noKeepAlive {
		h.every = keepAliveEvery(c)
		h.next = sent.Add(h.every)
	}
	return h
}

func keepAliveEvery(c *lockConfig) time.Duration {
	if c.keepAliveEvery > 0 {
		return max(c.keepAliveEvery, time.Millisecond)
	}
	return max(c.expires/3, time.Millisecond)
}

// Main returns a snapshot of the scope's main lock, as last acquired or
// renewed.
func (s *Scope) Main() *Lock {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := *s.main
	return &l
}

// Context is cancelled when the scope closes, when the context it was
// made from ends, or, with cause ErrLockLost, when a lock of the scope is
// lost: found taken or gone by a renewal, or not renewed in time to be
// sure it is still held. Work that must stop when a lock is lost watches
// it. Its Err and Done check the locks' safe deadline themselves, by the
// monotonic clock: a process resumed from a pause past that deadline sees
// the context done at its first check, before the keep-alive has run.
// Contexts derived from it learn of a loss from the keep-alive, a moment
// later.
func (s *Scope) Context() context.Context { return s.ctx }

// Lock takes one more lock, held (and kept alive, as the main lock is)
// until Unlock or the scope's Close; its loss cancels Context. It
// defaults to the scope's expiry, wait, holder and keep-alive; opts
// override them. It returns ErrLocked when name is held, by anyone, this
// scope included.
func (s *Scope) Lock(ctx context.Context, name string, opts ...LockOption) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	c := s.defaults
	c.given = 0
	if err := c.apply("Scope.Lock", scopeOptions, opts); err != nil {
		return err
	}
	if c.given&optKeepAliveEvery != 0 {
		c.noKeepAlive = c.given&optNoKeepAlive != 0
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	l, sent, err := s.m.acquire(ctx, name, &c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // closed while we were acquiring: do not leak the lock
		rctx, cancel := s.m.detached(ctx)
		defer cancel()
		return errors.Join(ErrScopeClosed, s.m.Release(rctx, l))
	}
	s.held[name] = newHeld(l, sent, &c)
	s.resetSafe()
	s.poke()
	return nil
}

// TryLock is Lock reporting a held name as false instead of ErrLocked
// (django-lockmgr's lock(ret=True)).
func (s *Scope) TryLock(ctx context.Context, name string, opts ...LockOption) (bool, error) {
	err := s.Lock(ctx, name, opts...)
	if errors.Is(err, ErrLocked) {
		return false, nil
	}
	return err == nil, err
}

// Unlock releases one of the scope's locks, owner-checked: the main lock
// or one taken with Lock. It returns ErrNotHeld if the scope does not hold
// name, or no longer does.
func (s *Scope) Unlock(ctx context.Context, name string) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	s.mu.Lock()
	h := s.held[name]
	if h == nil || s.closed {
		s.mu.Unlock()
		return notHeldError(name)
	}
	delete(s.held, name)
	s.resetSafe()
	if s.main.Name == name {
		s.main = &Lock{Name: name, LockedBy: s.main.LockedBy, LockProcess: s.main.LockProcess}
	}
	s.mu.Unlock()
	return s.m.Release(ctx, h.lock)
}

func (s *Scope) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrScopeClosed
	}
	return nil
}

// poke tells the tending goroutine the held set changed; s.mu is held or
// not, either way.
func (s *Scope) poke() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}
