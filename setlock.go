package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SetLock statuses, as django-lockmgr's set_lock reports them.
const (
	StatusCreate = "create" // the name was free and is now locked
	StatusExtend = "extend" // the name was held and its expiry was extended
	StatusSkip   = "skip"   // nothing was done: free without Create, or held with NoRenew
)

// LockSetResult is what SetLock did, in the shape of django-lockmgr's
// set_lock result.
type LockSetResult struct {
	// Locks are the locks held after the call, one per name whose status
	// left it locked, in the caller's order.
	Locks []*Lock
	// Counts tallies the statuses.
	Counts LockSetCounts
	// Statuses has one entry per name given, in the caller's order.
	Statuses []LockSetStatus
}

// LockSetCounts tallies a SetLock, as django-lockmgr's counts do.
type LockSetCounts struct {
	Created    int // free names now locked (StatusCreate)
	Renewed    int // held names whose expiry was extended (StatusExtend)
	SkipCreate int // free names left free because of NoCreate
	SkipRenew  int // held names left as they were because of NoRenew
}

// LockSetStatus is what SetLock did with one name.
type LockSetStatus struct {
	Name      string // the name as given
	WasLocked bool   // held before the call
	Status    string // StatusCreate, StatusExtend or StatusSkip
	Locked    bool   // held after the call
}

// maxSetLockAttempts bounds the retries of a SetLock whose transaction met
// a concurrent writer (a name taken between the read and the write, or a
// deadlock the database broke). Contention on a loaded machine was seen to
// need more than 10 (8 goroutines over 6 names on PostgreSQL).
const maxSetLockAttempts = 30

// SetLock locks or extends many names at once, in one transaction, as
// django-lockmgr's set_lock does. Per name, in the caller's order: a free
// name is created (unless NoCreate: skipped); a held one, whoever holds it,
// is extended to max(expiry, now+Expires) (unless NoRenew: skipped) or,
// with Fail, ends the call: everything is rolled back and a *LockFail
// naming the holder is returned (it matches ErrLocked). A name given twice
// is processed twice. Rows are locked and written in name order, so
// concurrent SetLocks over overlapping names do not deadlock; a
// transaction that meets a concurrent writer is retried. Under WithTx it
// runs in a savepoint, so a LockFail leaves the caller's transaction
// usable. Bad names or options return an error before any SQL runs.
func (m *Manager) SetLock(ctx context.Context, names []string, opts ...LockOption) (*LockSetResult, error) {
	for i, n := range names {
		if err := ValidateName(n); err != nil {
			return nil, fmt.Errorf("names[%d]: %w", i, err)
		}
	}
	c, err := newLockConfig("SetLock", setLockOptions, opts)
	if err != nil || len(names) == 0 {
		return &LockSetResult{}, err
	}
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lockmgr: set lock: %w", context.Cause(ctx))
		}
		// A caller that gives up rolls the transaction back, unless its
		// commit is under way: that runs to its end (see transaction).
		var res *LockSetResult
		err := m.patiently(ctx, func() error {
			return m.transaction(ctx, func(tx *Manager) error {
				var err error
				res, err = tx.setLockOnce(ctx, names, &c)
				return err
			})
		})
		if attempt < maxSetLockAttempts && (errors.Is(err, errRaced) || m.d.eng.Retryable(err, m.inTx)) {
			if sleep(ctx, jitter(time.Duration(attempt)*minBackoff)) == nil {
				continue
			}
		}
		if errors.Is(err, errRaced) {
			err = fmt.Errorf("%w: concurrent writers changed these names %d times running", ErrLocked, attempt)
		}
		return res, err
	}
}

// errRaced reports a name taken between SetLock's read and its write.
var errRaced = errors.New("lockmgr: raced with a concurrent writer")

// setLockOnce plans in the caller's order from rows locked in name order,
// then writes in name order.
func (m *Manager) setLockOnce(ctx context.Context, names []string, c *lockConfig) (*LockSetResult, error) {
	start := time.Now()
	sorted := slices.Compact(slices.Sorted(slices.Values(names)))
	rows, err := m.lockRows(ctx, sorted)
	if err != nil {
		return nil, err
	}
	held := map[string]*Lock{}
	for name, r := range rows {
		if r.live {
			held[name] = r.lock
		}
	}
	res, create, extend, err := planSetLock(names, held, c)
	if err != nil {
		return nil, err
	}
	final := map[string]*Lock{}
	for _, name := range sorted {
		var l *Lock
		var err error
		switch {
		case create[name]:
			l, err = m.tryAcquire(ctx, name, c, start)
		case extend[name]:
			l, err = m.renewToken(ctx, held[name], &lockConfig{expires: c.expires})
		default:
			l = held[name]
		}
		if errors.Is(err, ErrLocked) || errors.Is(err, ErrNotHeld) {
			return nil, errRaced
		}
		if err != nil {
			return nil, err
		}
		final[name] = l
	}
	for i, st := range res.Statuses {
		if st.Locked {
			res.Locks = append(res.Locks, final[names[i]])
		}
	}
	return res, nil
}

// planSetLock decides each name's status, in the caller's order, from the
// live holders; it returns which names to create and which to extend.
func planSetLock(names []string, held map[string]*Lock, c *lockConfig) (*LockSetResult, map[string]bool, map[string]bool, error) {
	res := &LockSetResult{Statuses: make([]LockSetStatus, 0, len(names))}
	create, extend := map[string]bool{}, map[string]bool{}
	for _, name := range names {
		st := LockSetStatus{Name: name, WasLocked: held[name] != nil || create[name]}
		switch {
		case !st.WasLocked && flag(c.create, true):
			st.Status, st.Locked = StatusCreate, true
			create[name] = true
			res.Counts.Created++
		case !st.WasLocked:
			st.Status = StatusSkip
			res.Counts.SkipCreate++
		case c.fail:
			holder := held[name]
			if holder == nil { // created earlier in this very call
				holder = &Lock{Name: name}
			}
			return nil, nil, nil, &LockFail{Lock: holder}
		case !c.noRenew:
			st.Status, st.Locked = StatusExtend, true
			extend[name] = !create[name]
			res.Counts.Renewed++
		default:
			st.Status, st.Locked = StatusSkip, true
			res.Counts.SkipRenew++
		}
		res.Statuses = append(res.Statuses, st)
	}
	return res, create, extend, nil
}
