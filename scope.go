package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Scope holds a main lock, and any further locks taken through it, until
// Close (django-lockmgr's LockMgr). While open it renews the main lock in
// the background (unless NoKeepAlive) and cancels Context with cause
// ErrLockLost if the lock is lost. A Scope's methods are safe for
// concurrent use.
type Scope struct {
	m        *Manager
	defaults lockConfig // for extra locks: the scope's expiry, wait and holder
	ctx      context.Context
	cancel   context.CancelCauseFunc
	parent   context.Context
	stopWake func() bool        // stops the close-on-cancel of the parent context
	stopKA   context.CancelFunc // stops the keep-alive goroutine
	kaDone   chan struct{}      // closed when it has stopped
	start    time.Time

	mu       sync.Mutex
	main     *Lock
	extra    map[string]*Lock
	deadline time.Time // by this process's monotonic clock, the main lock lasts at least until then
	lost     bool
	closed   bool

	closeOnce sync.Once
	closeErr  error
}

// Do takes name (waiting as Wait allows), runs fn with a context that is
// cancelled with cause ErrLockLost if the lock is lost, and releases every
// lock the scope holds when fn returns, fails, panics (the panic is
// re-raised after the release) or ctx ends. It returns fn's error, joined
// with ErrLockLost if the lock was lost meanwhile and with any release
// error; ErrLocked if name could not be taken.
func (m *Manager) Do(ctx context.Context, name string, fn func(ctx context.Context, s *Scope) error, opts ...LockOption) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidOption)
	}
	s, err := m.Acquire(ctx, name, opts...)
	if err != nil {
		return err
	}
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
// derived from ctx; when ctx ends the scope closes itself, releasing its
// locks. It returns ErrLocked if name could not be taken.
func (m *Manager) Acquire(ctx context.Context, name string, opts ...LockOption) (*Scope, error) {
	c, err := prepare(name, opts)
	if err != nil {
		return nil, err
	}
	l, sent, err := m.acquire(ctx, name, &c)
	if err != nil {
		return nil, err
	}
	s := &Scope{m: m, defaults: c, parent: ctx, main: l, extra: map[string]*Lock{}, start: sent}
	s.defaults.lockedBy, s.defaults.process = &l.LockedBy, l.LockProcess
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	s.deadline = sent.Add(c.expires)
	if l.LockedUntil != nil && !c.noKeepAlive {
		var kaCtx context.Context
		kaCtx, s.stopKA = context.WithCancel(context.WithoutCancel(ctx))
		s.kaDone = make(chan struct{})
		go s.keepAlive(kaCtx, keepAliveEvery(&c), c.expires)
	}
	// Under s.mu, so that a Close run by the AfterFunc at once (ctx already
	// done) waits until stopWake is set.
	s.mu.Lock()
	s.stopWake = context.AfterFunc(ctx, func() { _ = s.Close() })
	s.mu.Unlock()
	return s, nil
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
// made from ends, or, with cause ErrLockLost, when the main lock is lost:
// found taken or gone by a renewal, or not renewed in time to be sure it
// is still held. Work that must stop when the lock is lost watches it.
func (s *Scope) Context() context.Context { return s.ctx }

// Lock takes one more lock, held until Unlock or the scope's Close. It
// defaults to the scope's expiry, wait and holder; opts override them.
// It returns ErrLocked when name is held, by anyone, this scope included.
func (s *Scope) Lock(ctx context.Context, name string, opts ...LockOption) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	c := s.defaults
	c.noKeepAlive, c.keepAliveEvery = false, 0
	for _, o := range opts {
		if o == nil {
			return fmt.Errorf("%w: nil LockOption", ErrInvalidOption)
		}
		o(&c)
	}
	if c.err != nil {
		return c.err
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	l, _, err := s.m.acquire(ctx, name, &c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // closed while we were acquiring: do not leak the lock
		return errors.Join(ErrScopeClosed, s.m.Release(context.WithoutCancel(ctx), l))
	}
	s.extra[name] = l
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
	if err := ValidateName(name); err != nil {
		return err
	}
	s.mu.Lock()
	l, isMain := s.extra[name], false
	if l == nil && s.main != nil && s.main.Name == name && !s.closed {
		l, isMain = s.main, true
	}
	if l == nil {
		s.mu.Unlock()
		return notHeldError(name)
	}
	delete(s.extra, name)
	if isMain {
		s.main = &Lock{Name: name, LockedBy: l.LockedBy, LockProcess: l.LockProcess}
	}
	s.mu.Unlock()
	if isMain {
		s.stopKeepAlive()
	}
	return s.m.Release(ctx, l)
}

func (s *Scope) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrScopeClosed
	}
	return nil
}
