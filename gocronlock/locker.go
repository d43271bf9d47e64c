package gocronlock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/gormlock/lockmgr"
)

// Defaults of the Locker's options.
const (
	// DefaultInterval is the tick interval a Locker assumes unless Interval
	// says otherwise: gocron's jobs are cron jobs, a minute apart or more.
	DefaultInterval = time.Minute
	// DefaultPrefix starts the name of every lock a Locker takes: the lock
	// of the job "report" is "gocron:report".
	DefaultPrefix = "gocron:"
	// releaseTimeout bounds an Unlock's release, whatever its context.
	releaseTimeout = 10 * time.Second
)

// Option configures a Locker.
type Option func(*config)

type config struct {
	interval, atLeast, atMost time.Duration
	prefix                    string
	err                       error
}

// Interval is the shortest interval between two ticks of the jobs the
// Locker serves (default DefaultInterval). It sets the defaults of
// LockAtLeastFor (half of it) and LockAtMostFor (three quarters). d must
// be positive.
func Interval(d time.Duration) Option {
	return func(c *config) {
		c.check(d > 0, "Interval(%v) must be positive", d)
		c.interval = d
	}
}

// LockAtLeastFor is how long a job's lock is held at least, from its
// acquisition by the database's clock, however soon the job returns: the
// spread of the moments at which the replicas fire one tick must be
// shorter, and the interval between ticks longer. Default: Interval/2. d
// must be positive.
func LockAtLeastFor(d time.Duration) Option {
	return func(c *config) {
		c.check(d > 0, "LockAtLeastFor(%v) must be positive", d)
		c.atLeast = d
	}
}

// LockAtMostFor is when a job's lock expires, from its acquisition,
// whether the job is still running or its runner crashed: longer than the
// job runs, shorter than the interval (so that a crashed runner does not
// hold back the next tick), at least LockAtLeastFor. Default:
// Interval*3/4.
func LockAtMostFor(d time.Duration) Option {
	return func(c *config) {
		c.check(d > 0, "LockAtMostFor(%v) must be positive", d)
		c.atMost = d
	}
}

// Prefix starts the name of each job's lock (default DefaultPrefix), so
// that jobs do not share names with the application's other locks.
func Prefix(p string) Option {
	return func(c *config) { c.prefix = p }
}

func (c *config) check(ok bool, format string, args ...any) {
	if !ok && c.err == nil {
		c.err = fmt.Errorf("%w: gocronlock: "+format, append([]any{lockmgr.ErrInvalidOption}, args...)...)
	}
}

// Locker is a gocron.Locker on lockmgr locks: pass it to
// gocron.WithDistributedLocker (or WithDistributedJobLocker) on every
// replica. Its methods are safe for concurrent use.
type Locker struct {
	m       *lockmgr.Manager
	cfg     config
	mu      sync.Mutex
	pending map[*time.Timer]pending // deletions of kept rows, due when their hold passes
	closed  bool
}

var _ gocron.Locker = (*Locker)(nil)

// NewLocker returns a Locker taking m's locks. Bad options are
// lockmgr.ErrInvalidOption, before anything touches the database. A
// Manager checks its table on its first call, which can take a few hundred
// milliseconds: make one (m.AutoMigrate, or any call) before the scheduler
// starts, so that it does not delay the first tick's acquisition past
// another replica's hold.
func NewLocker(m *lockmgr.Manager, opts ...Option) (*Locker, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: gocronlock: nil *lockmgr.Manager", lockmgr.ErrInvalidOption)
	}
	c := config{interval: DefaultInterval, prefix: DefaultPrefix}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: gocronlock: nil Option", lockmgr.ErrInvalidOption)
		}
		o(&c)
	}
	if c.atLeast == 0 {
		c.atLeast = c.interval / 2
	}
	if c.atMost == 0 {
		c.atMost = max(c.interval*3/4, c.atLeast)
	}
	c.check(c.atLeast <= c.atMost, "LockAtLeastFor(%v) is longer than LockAtMostFor(%v)", c.atLeast, c.atMost)
	if c.err != nil {
		return nil, c.err
	}
	return &Locker{m: m, cfg: c, pending: map[*time.Timer]pending{}}, nil
}

// Lock takes the lock of the job key for this tick, in one statement:
// held at least LockAtLeastFor and at most LockAtMostFor. When another
// replica holds it (it runs, or ran, this tick) it returns an error
// matching lockmgr.ErrLocked, and gocron skips the run; a key that is no
// valid lock name is lockmgr.ErrInvalidName.
func (lk *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	l, err := lk.m.GetLock(ctx, lk.cfg.prefix+key, lockmgr.Expires(lk.cfg.atMost), lockmgr.HoldAtLeast(lk.cfg.atLeast))
	if err != nil {
		return nil, err
	}
	return &lock{lk: lk, l: l, taken: time.Now()}, nil
}

// Close waits until the holds of the ticks this Locker released have
// passed and deletes their rows (owner-checked), unless ctx ends first,
// when the rest are left to expire (CleanLocks deletes them) and it
// returns ctx's error: bound it by the shutdown's grace period, as a hold
// lasts up to LockAtLeastFor. Call it after the scheduler's Shutdown.
// Locks of jobs still running are not touched; a Lock after Close still
// works, but leaves its row to expire.
func (lk *Locker) Close(ctx context.Context) error {
	lk.mu.Lock()
	lk.closed = true
	var due []pending
	for t, p := range lk.pending {
		if t.Stop() { // else it fires now, and deletes its row itself
			due = append(due, p)
			delete(lk.pending, t)
		}
	}
	lk.mu.Unlock()
	slices.SortFunc(due, func(a, b pending) int { return a.at.Compare(b.at) })
	for _, p := range due {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(p.at)):
		}
		lk.remove(ctx, p.l)
	}
	return nil
}

// pending is the deletion of a kept row, due at at.
type pending struct {
	at time.Time
	l  *lockmgr.Lock
}

// lock is one tick's lock.
type lock struct {
	lk    *Locker
	l     *lockmgr.Lock
	taken time.Time // when GetLock returned, by this process's monotonic clock
}

// Unlock releases the tick's lock once the job has returned: at once if
// LockAtLeastFor has passed, else when it does. It returns an error
// matching lockmgr.ErrNotHeld if the lock had expired and was taken (the
// job ran longer than LockAtMostFor), and runs on a context of its own so
// that a scheduler shutting down still releases.
func (k *lock) Unlock(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := k.lk.m.Release(rctx, k.l); err != nil {
		return err
	}
	// The database's acquisition came after taken: by the time this fires
	// the hold has passed by its clock too, but for clock drift, which
	// the margin covers; a release still early keeps the row.
	if left := k.lk.cfg.atLeast - time.Since(k.taken); left > 0 {
		k.lk.later(left+holdMargin, k.l)
	}
	return nil
}

// holdMargin is how long after a hold a kept row is deleted.
const holdMargin = 100 * time.Millisecond

// later deletes l's kept row after d, if l's token still holds it.
func (lk *Locker) later(d time.Duration, l *lockmgr.Lock) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		lk.mu.Lock()
		_, ok := lk.pending[t]
		delete(lk.pending, t)
		lk.mu.Unlock()
		if ok {
			lk.remove(context.Background(), l)
		}
	})
	lk.pending[t] = pending{at: time.Now().Add(d), l: l}
}

// remove releases l, whose hold has passed: its row is deleted unless the
// next tick took it (ErrNotHeld). On any other error the row expires
// anyway, and CleanLocks deletes it.
func (lk *Locker) remove(ctx context.Context, l *lockmgr.Lock) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_ = lk.m.Release(rctx, l)
}
