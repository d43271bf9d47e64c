package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// MaxSemaphoreSize is the most slots a semaphore may have.
const MaxSemaphoreSize = 256

// Semaphore is a name that at most n holders hold at once ("three exports
// at a time"). Each holder holds one of n slots, each slot an ordinary
// lock row of the lock table named "<name>#<i>" (i from 0 to n-1), so a
// slot keeps every guarantee of a lock: an owner token, a fence that grows
// with each acquisition of the slot, expiry by the database's clock,
// keep-alive in a Scope. A marker row, "<name>#size", which never expires,
// records n: a process that asks for another n gets ErrSemaphoreSize
// instead of adding slots (docs/semaphores.md says how to change n).
// A Semaphore is safe for concurrent use.
type Semaphore struct {
	m      *Manager
	name   string
	n      int
	slots  []string // slot names, by index
	marker string
}

// NewSemaphore returns the semaphore name of n slots on m's table. It runs
// no SQL: it returns ErrInvalidOption for a nil Manager or n outside 1 to
// MaxSemaphoreSize, and ErrInvalidName for a name whose slot or marker
// names would not be valid lock names (the longest, "<name>#size", must
// fit in MaxNameLen bytes).
func NewSemaphore(m *Manager, name string, n int) (*Semaphore, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil *Manager", ErrInvalidOption)
	}
	if n < 1 || n > MaxSemaphoreSize {
		return nil, fmt.Errorf("%w: semaphore %q of %d slots: the size must be 1 to %d", ErrInvalidOption, name, n, MaxSemaphoreSize)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	marker := semaphoreMarker(name)
	if len(marker) > MaxNameLen { // the longest of its rows' names
		return nil, fmt.Errorf("%w: semaphore %q: its marker row %q would be %d bytes, the limit is %d",
			ErrInvalidName, name, marker, len(marker), MaxNameLen)
	}
	s := &Semaphore{m: m, name: name, n: n, marker: marker, slots: make([]string, n)}
	for i := range s.slots {
		s.slots[i] = semaphoreSlot(name, i)
	}
	return s, nil
}

// Name is the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Size is the semaphore's number of slots, n.
func (s *Semaphore) Size() int { return s.n }

// Slot is the lock name of slot i (0 ≤ i < Size): "<name>#<i>".
func (s *Semaphore) Slot(i int) string { return semaphoreSlot(s.name, i) }

// Acquire takes a free (absent or expired) slot and returns its Lock,
// which Release (or Manager.Release) gives back. It takes Expires, Wait,
// LockedBy and Process as GetLock does. When all n slots are held it
// returns an error matching ErrLocked at once or, with Wait(d), waits up
// to d, woken by the release of any slot (through the Manager's Notifier
// too). Of concurrent callers, never more than n hold slots at once: each
// slot is taken by GetLock's one atomic statement. It returns
// ErrSemaphoreSize if the semaphore's marker records another n.
func (s *Semaphore) Acquire(ctx context.Context, opts ...LockOption) (*Lock, error) {
	c, err := s.config(ctx, "Semaphore.Acquire", getLockOptions, opts)
	if err != nil {
		return nil, err
	}
	var l *Lock
	err = s.acquire(ctx, &c, func(slot string) (err error) {
		l, err = s.m.GetLock(ctx, slot, slices.Concat(opts, []LockOption{Wait(0)})...)
		return err
	})
	return l, err
}

// Release releases a slot taken by Acquire, owner-checked as
// Manager.Release is (ErrNotHeld when l's token no longer holds it), and
// wakes a waiter. A Lock that is not one of this semaphore's slots is
// ErrInvalidOption.
func (s *Semaphore) Release(ctx context.Context, l *Lock) error {
	if err := validateLock(l); err != nil {
		return err
	}
	if s.slotIndex(l.Name) < 0 {
		return fmt.Errorf("%w: lock %q is not a slot of semaphore %q of %d", ErrInvalidOption, l.Name, s.name, s.n)
	}
	return s.m.Release(ctx, l)
}

// Do takes a slot as Acquire does and runs fn in a Scope whose main lock is
// the slot, as Manager.Do does: the slot is kept alive while fn runs, its
// loss cancels fn's context with cause ErrLockLost, and it is released
// when fn returns, fails or panics. It takes the options Manager.Do takes.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context, sc *Scope) error, opts ...LockOption) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidOption)
	}
	c, err := s.config(ctx, "Semaphore.Do", scopeOptions, opts)
	if err != nil {
		return err
	}
	var sc *Scope
	err = s.acquire(ctx, &c, func(slot string) (err error) {
		sc, err = s.m.Acquire(ctx, slot, slices.Concat(opts, []LockOption{Wait(0)})...)
		return err
	})
	if err != nil {
		return err
	}
	return sc.run(fn)
}

// Holders returns the live locks of the semaphore's slots, in slot order,
// in one statement. Each carries its holder's token.
func (s *Semaphore) Holders(ctx context.Context) ([]Lock, error) {
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	st, err := s.m.semaphoreState(ctx, s.name, s.n)
	if err != nil {
		return nil, err
	}
	out := make([]Lock, 0, len(st.held))
	for i := range s.n {
		if l, ok := st.held[i]; ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// config validates a call's context and options before any SQL runs.
func (s *Semaphore) config(ctx context.Context, call string, allowed optionSet, opts []LockOption) (lockConfig, error) {
	if err := checkContext(ctx); err != nil {
		return lockConfig{}, err
	}
	return newLockConfig(call, allowed, opts)
}

// acquire is one attempt, then, while every slot is held and c.wait
// allows, more of them (wait).
func (s *Semaphore) acquire(ctx context.Context, c *lockConfig, take func(slot string) error) error {
	err := s.attempt(ctx, take)
	if c.wait <= 0 || !errors.Is(err, ErrLocked) {
		return err
	}
	return s.wait(ctx, c.wait, take)
}

// attempt reads, in one statement, the semaphore's marker and a few of
// its free slots in random order (spreading racing callers over them),
// and takes the first it wins: normally one statement more. Slots lost to
// racing callers are read again, a few times, before ErrLocked.
func (s *Semaphore) attempt(ctx context.Context, take func(slot string) error) error {
	for range semaphoreReads {
		free, by, marked, err := s.m.semaphoreFree(ctx, s.name, s.n)
		if err != nil {
			return err
		}
		if err := s.checkSize(ctx, by, marked); err != nil {
			return err
		}
		if len(free) == 0 {
			break
		}
		for _, i := range free {
			if err := take(s.slots[i]); !errors.Is(err, ErrLocked) {
				return err
			}
		}
	}
	return fmt.Errorf("%w: semaphore %q: all %d slots are held", ErrLocked, s.name, s.n)
}

// semaphoreReads bounds how often one attempt reads free slots again
// after losing those it read to racing callers; semaphoreCandidates is
// how many free slots one read returns.
const (
	semaphoreReads      = 3
	semaphoreCandidates = 4
)

// slotIndex is i for s.Slot(i), else -1.
func (s *Semaphore) slotIndex(name string) int {
	sem, i, ok := SemaphoreOf(name)
	if !ok || sem != s.name || i < 0 || i >= s.n {
		return -1
	}
	return i
}

func semaphoreSlot(name string, i int) string { return name + "#" + strconv.Itoa(i) }
func semaphoreMarker(name string) string      { return name + "#size" }
