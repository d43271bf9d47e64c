package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Renew extends l if its token still holds the name, in one statement:
// to max(current expiry, now+Expires), or with AddTime to current+Expires
// (Expires defaults to DefaultExpires; Expires(0) makes it never expire).
// A never-expiring lock stays so. If the token no longer holds the name it
// returns ErrNotHeld, unless Create is given: then it takes the name anew
// (ErrLocked if someone else holds it). A Lock with an empty Token (as
// django-lockmgr's rows have) is held by nobody's token: ErrNotHeld, before
// any SQL. The returned Lock is a new snapshot.
func (m *Manager) Renew(ctx context.Context, l *Lock, opts ...LockOption) (nl *Lock, err error) {
	if err := validateLock(l); err != nil {
		return nil, err
	}
	ctx, end := m.begin(ctx, "renew", l.Name)
	defer func() { end(nl, err) }()
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	c, err := newLockConfig("Renew", renewOptions, opts)
	if err != nil {
		return nil, err
	}
	// An empty token is nobody's: rows django-lockmgr wrote have one, and
	// renewing by it would extend whatever Django holds.
	err = fmt.Errorf("%w: lock %q has no token", ErrNotHeld, l.Name)
	if l.Token != "" {
		nl, err = m.renewToken(ctx, l, &c)
	}
	if errors.Is(err, ErrNotHeld) && flag(c.create, false) {
		return m.recreate(ctx, l, &c)
	}
	return nl, err
}

// recreate takes l's name anew for a renewal with Create, keeping l's
// holder details unless the call's options replace them.
func (m *Manager) recreate(ctx context.Context, l *Lock, c *lockConfig) (*Lock, error) {
	if c.lockedBy == nil {
		c.lockedBy = &l.LockedBy
	}
	if c.process == nil && l.LockProcess != nil {
		c.process = l.LockProcess
	}
	c.hold = l.holdAtLeast // a main lock taken anew keeps its HoldAtLeast
	return m.tryAcquire(ctx, l.Name, c, time.Now())
}

// renewToken is the owner-checked single-statement renewal.
func (m *Manager) renewToken(ctx context.Context, l *Lock, c *lockConfig) (*Lock, error) {
	start := time.Now()
	var v values
	m.d.fill(&v, c.expires)
	v[aName], v[aToken] = l.Name, l.Token
	var until any
	var found bool
	err := m.patiently(ctx, func() (err error) {
		until, found, err = m.d.eng.Renew(ctx, &runner{m: m, v: &v}, flag(c.addTime, false), c.expires)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lockmgr: renew %q: %w", l.Name, err)
	}
	if !found {
		return nil, notHeldError(l.Name)
	}
	nl := *l
	nl.UpdatedAt = time.Now().UTC()
	if nl.LockedUntil, err = toTime(until); err != nil {
		return nil, fmt.Errorf("lockmgr: renew %q: %w", l.Name, err)
	}
	m.event(ctx, m.hooks.OnRenew, &nl, start, "lockmgr: renewed")
	return &nl, nil
}

// RenewLock renews the named lock whoever holds it (django-lockmgr's
// renew_lock), in a transaction that locks the row: to max(current expiry,
// now+Expires), or with AddTime to current+Expires. An absent or expired
// lock gives ErrLockNotFound, unless Create is given: then it is created
// for Expires from now.
func (m *Manager) RenewLock(ctx context.Context, name string, opts ...LockOption) (out *Lock, err error) {
	c, err := prepare(ctx, "RenewLock", renewOptions, name, opts)
	if err != nil {
		return nil, err
	}
	ctx, end := m.begin(ctx, "renew_lock", name)
	defer func() { end(out, err) }()
	err = m.patiently(ctx, func() error {
		return m.retrying(ctx, func() error { // a transaction the database rolled back is retried whole
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("lockmgr: renew lock %q: %w", name, context.Cause(ctx))
			}
			// With Create it can take the name: its commit, once under way,
			// is not cut off by ctx (see transaction).
			return m.transaction(ctx, func(tx *Manager) error { return tx.renewLockOnce(ctx, name, &c, &out) })
		})
	})
	return out, err
}

// renewLockOnce is RenewLock's transaction.
func (m *Manager) renewLockOnce(ctx context.Context, name string, c *lockConfig, out **Lock) error {
	rows, err := m.lockRows(ctx, []string{name})
	if err != nil {
		return err
	}
	if r, ok := rows[name]; ok && r.live {
		*out, err = m.renewToken(ctx, r.lock, c)
		return err
	}
	if !flag(c.create, false) {
		return fmt.Errorf("%w: %q (renew with Create to create it)", ErrLockNotFound, name)
	}
	*out, err = m.tryAcquire(ctx, name, c, time.Now())
	return err
}
