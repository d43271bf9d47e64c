package lockmgr

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff bounds for Wait: the first retry comes after about minBackoff,
// each later one after up to twice the last, never more than maxBackoff.
const (
	minBackoff = 2 * time.Millisecond
	maxBackoff = time.Second
)

// acquire is tryAcquire, retried while the name is held and c.wait allows.
// It also returns when the winning attempt was sent: the lock lasts at
// least until then plus its expiry, by this process's monotonic clock.
func (m *Manager) acquire(ctx context.Context, name string, c *lockConfig) (*Lock, time.Time, error) {
	start := time.Now()
	l, err := m.tryAcquire(ctx, name, c, start)
	if c.wait <= 0 || !m.waitable(err) {
		return l, start, err
	}
	return m.waitAcquire(ctx, name, c, start)
}

// waitable reports an attempt that Wait tries again: the name was held,
// or the database kept rolling the attempt back (a deadlock, a Galera
// certification conflict), which a later attempt gets past.
func (m *Manager) waitable(err error) bool {
	return errors.Is(err, ErrLocked) || m.d.retryable(err, m.inTx)
}

// waitAcquire sleeps with jittered exponential backoff between attempts,
// waking early when a release of name is seen, and makes its last attempt
// at the deadline, never after it.
func (m *Manager) waitAcquire(ctx context.Context, name string, c *lockConfig, start time.Time) (*Lock, time.Time, error) {
	deadline := start.Add(c.wait)
	wake := make(chan struct{}, 1)
	defer m.subscribe(name, wake)()
	m.checkNotifier(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	step := minBackoff
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, time.Time{}, heldError(name)
		}
		timer.Reset(min(jitter(step), left))
		select {
		case <-ctx.Done():
			return nil, time.Time{}, errors.Join(heldError(name), context.Cause(ctx))
		case <-wake:
			step = minBackoff
		case <-timer.C:
			step = min(2*step, maxBackoff)
		}
		sent := time.Now()
		l, err := m.tryAcquire(ctx, name, c, start)
		if err != nil && ctx.Err() != nil {
			return nil, time.Time{}, errors.Join(heldError(name), context.Cause(ctx))
		}
		if !m.waitable(err) {
			return l, sent, err
		}
	}
}

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

// subscribe arranges for wake to be signalled when name is released by
// this process, or by another one the notifier hears from.
func (m *Manager) subscribe(name string, wake chan struct{}) (stop func()) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	stopLocal := local.subscribe(m.tableName, name, signal)
	if m.notifier == nil || m.channel == "" {
		return stopLocal
	}
	stopRemote := m.notifier.Subscribe(m.channel, func(released string) {
		if released == name {
			signal()
		}
	})
	return func() { stopLocal(); stopRemote() }
}

// local is the process-wide registry of waiters, keyed by table and name,
// so that a release by any Manager wakes waiters of every Manager in this
// process at once.
var local = &waiters{subs: map[string]map[*func()]struct{}{}}

type waiters struct {
	mu   sync.Mutex
	subs map[string]map[*func()]struct{}
}

func (w *waiters) subscribe(table, name string, fn func()) (stop func()) {
	key, p := table+"\x00"+name, &fn
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[key] == nil {
		w.subs[key] = map[*func()]struct{}{}
	}
	w.subs[key][p] = struct{}{}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.subs[key], p)
		if len(w.subs[key]) == 0 {
			delete(w.subs, key)
		}
	}
}

func (w *waiters) wake(table, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for fn := range w.subs[table+"\x00"+name] {
		(*fn)()
	}
}

func wakeLocal(table, name string) { local.wake(table, name) }
