package lockmgr

import (
	"context"
	"fmt"
	"time"
)

// Release releases l if its token still holds the name, in one statement.
// If the lock was unlocked, cleaned, reset, or expired and taken over, it
// returns an error matching ErrNotHeld and leaves the new holder alone. A
// lock whose expiry passed but that nobody took is still released. On
// PostgreSQL, outside WithTx, the release of a lock with an expiry does not
// wait for the disk: a server crash right after it can undo it, and the lock
// is then held until it expires (docs/databases.md).
//
// Release takes one option, HoldAtLeast, which replaces the one l's
// acquisition was given: before it has passed, the release keeps the lock
// held until it does (one UPDATE, and no waiter is woken); after, it
// deletes the row (an UPDATE that changes nothing, then the DELETE).
func (m *Manager) Release(ctx context.Context, l *Lock, opts ...LockOption) (err error) {
	if err := validateLock(l); err != nil {
		return err
	}
	c, err := newLockConfig("Release", releaseOptions, opts)
	if err != nil {
		return err
	}
	ctx, end := m.begin(ctx, "release", l.Name)
	defer func() { end(l, err) }()
	if l.Token == "" {
		return fmt.Errorf("%w: lock %q has no token", ErrNotHeld, l.Name)
	}
	hold := l.holdAtLeast
	if c.given&optHoldAtLeast != 0 {
		hold = c.hold
	}
	start := time.Now()
	var v values
	v[aName], v[aToken] = l.Name, l.Token
	if hold > 0 {
		kept, err := m.keep(ctx, &v, hold)
		if err != nil {
			m.warn(ctx, "lockmgr: release failed", l.Name, err)
			return fmt.Errorf("lockmgr: release %q: %w", l.Name, err)
		}
		if kept { // still held: nobody to wake
			m.event(ctx, m.hooks.OnRelease, l, start, "lockmgr: released, held until HoldAtLeast passes")
			return nil
		}
	}
	n, err := m.delete(ctx, m.d.release, m.d.releaseNotify, m.d.releaseWatched, &v)
	if err != nil {
		m.warn(ctx, "lockmgr: release failed", l.Name, err)
		return fmt.Errorf("lockmgr: release %q: %w", l.Name, err)
	}
	if n == 0 {
		return notHeldError(l.Name)
	}
	m.released(ctx, l, start)
	return nil
}

// keep is a release under HoldAtLeast(hold): it reports whether the row
// was kept, held with v's token until its acquisition + hold by the
// database's clock, because that is still to come.
func (m *Manager) keep(ctx context.Context, v *values, hold time.Duration) (bool, error) {
	m.d.fill(v, 0)
	v[aHold] = micros(hold)
	var n int64
	err := m.patiently(ctx, func() (err error) {
		n, err = m.exec(ctx, m.d.releaseHold, v)
		return err
	})
	return n > 0, err
}

// Unlock deletes the named lock whoever holds it (django-lockmgr's unlock),
// in one statement. An absent name is not an error.
func (m *Manager) Unlock(ctx context.Context, name string) (err error) {
	if err := ValidateName(name); err != nil {
		return err
	}
	ctx, end := m.begin(ctx, "unlock", name)
	defer func() { end(nil, err) }()
	start := time.Now()
	var v values
	v[aName] = name
	n, err := m.delete(ctx, m.d.unlock, m.d.unlockNotify, m.d.unlockWatched, &v)
	if err != nil {
		return fmt.Errorf("lockmgr: unlock %q: %w", name, err)
	}
	if n > 0 {
		m.released(ctx, &Lock{Name: name}, start)
	}
	return nil
}

// delete runs a release's DELETE, announcing it on the notifier's channel
// in the same statement when there is one: always with a plain Notifier,
// and only when some process watches the name with a Watcher.
func (m *Manager) delete(ctx context.Context, plain, notify, watched stmt, v *values) (int64, error) {
	v[aLazy] = !m.inTx && !inTransaction(m.pool()) // never change the durability of the caller's transaction
	s := plain
	if m.channel != "" {
		s = notify
		if _, ok := m.notifier.(Watcher); ok {
			s = watched
		}
		v[aChannel], v[aOrigin] = m.channel, originOf(m.dbID)
	}
	var n int64
	err := m.patiently(ctx, func() (err error) {
		if !m.d.deleteCounts {
			n, err = m.exec(ctx, s, v)
			return err
		}
		_, err = m.query(ctx, s, v, &n)
		return err
	})
	return n, err
}

func (m *Manager) released(ctx context.Context, l *Lock, start time.Time) {
	wakeLocal(m.dbID, m.tableName, l.Name)
	m.event(ctx, m.hooks.OnRelease, l, start, "lockmgr: released")
}
