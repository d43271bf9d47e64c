package lockmgr

import (
	"context"
	"database/sql"
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
	s := m.d.renewMax
	if flag(c.addTime, false) {
		s = m.d.renewAdd
	}
	var v values
	m.d.fill(&v, c.expires)
	v[aName], v[aToken] = l.Name, l.Token
	var until any
	var found bool
	var err error
	err = m.patiently(ctx, func() (err error) {
		if m.d.addTimeInClient && flag(c.addTime, false) {
			until, found, err = m.addTimeCAS(ctx, &v, c.expires)
		} else {
			until, found, err = m.runRenew(ctx, s, &v)
		}
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

// runRenew runs a renewal and returns the new expiry as the database gave it.
func (m *Manager) runRenew(ctx context.Context, s stmt, v *values) (until any, found bool, err error) {
	if !m.d.renewViaLastInsertID {
		found, err = m.query(ctx, s, v, &until)
		return until, found, err
	}
	var res sql.Result
	err = m.run(ctx, func() (err error) {
		res, err = m.result(ctx, s, v)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	id, err := res.LastInsertId()
	switch {
	case err != nil || id == 0:
		return nil, false, err
	case id == 1:
		return nil, true, nil // never expires
	}
	return id, true, nil
}

// addTimeCAS is AddTime for SQLite at microsecond precision: read the
// expiry, add in Go, write it back only if unchanged, retry if it changed.
func (m *Manager) addTimeCAS(ctx context.Context, v *values, expires time.Duration) (any, bool, error) {
	for {
		var old *string
		found, err := m.query(ctx, m.d.readUntil, v, &old)
		if err != nil || !found || old == nil {
			return nil, found, err // absent, or never expires: stays so
		}
		until, err := addExpiry(*old, expires)
		if err != nil {
			return nil, false, err
		}
		v[aOld], v[aUntil] = *old, until
		n, err := m.exec(ctx, m.d.casUntil, v)
		if err != nil || n == 1 {
			return until, n == 1, err
		}
	}
}

// addExpiry is max(old, now) + expires as SQLite text; nil for no expiry.
func addExpiry(old string, expires time.Duration) (any, error) {
	if expires == 0 {
		return nil, nil
	}
	t, err := parseTime(old)
	if err != nil {
		return nil, err
	}
	base := time.Now().UTC()
	if t.After(base) {
		base = *t
	}
	return addExpires(base, expires).Format(sqliteTimeLayout), nil
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
