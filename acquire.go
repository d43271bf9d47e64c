package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GetLock takes the named lock for Expires (default DefaultExpires) in one
// statement, taking over an expired holder's row. When the name is held it
// returns an error matching ErrLocked at once, or, with Wait(d), retries
// until d passes or ctx ends (then the error matches both ErrLocked and
// ctx's error). Of any number of concurrent callers exactly one wins. An
// attempt the database rolls back (a deadlock it broke, a Galera
// certification conflict) is repeated; if it keeps being rolled back, the
// error matches ErrLocked and carries the database's error too.
func (m *Manager) GetLock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	c, err := prepare(ctx, "GetLock", getLockOptions, name, opts)
	if err != nil {
		return nil, err
	}
	l, _, err := m.acquire(ctx, name, &c)
	return l, err
}

// tryAcquire is one attempt: the conditional upsert of dialect.acquire.
func (m *Manager) tryAcquire(ctx context.Context, name string, c *lockConfig, start time.Time) (*Lock, error) {
	l := &Lock{Name: name, LockedBy: m.lockedBy(c), Token: newToken(), holdAtLeast: c.hold}
	var v values
	now, until := m.d.fill(&v, c.expires)
	v[aName], v[aBy], v[aToken] = name, l.LockedBy, l.Token
	if pid := process(c); pid != 0 {
		l.LockProcess, v[aPid] = &pid, pid
	}
	if err := m.fitsLockedBy(ctx, l.LockedBy); err != nil {
		return nil, err
	}
	var token string
	var dbUntil, dbCreated any
	dest := []any{&token, &l.Fence, &dbUntil, &dbCreated}
	if m.d.clientClock {
		dest = dest[:2]
	}
	if err := ctx.Err(); err != nil { // nothing sent yet: nothing to undo
		return nil, fmt.Errorf("lockmgr: acquire %q: %w", name, context.Cause(ctx))
	}
	// The attempt runs to its reply whatever happens to ctx (bounded by
	// m.release): a statement cut off by ctx may still commit on the
	// server, and leave the lock held by a token nobody has.
	actx, cancel := m.detached(ctx)
	attempt := time.Now()
	found, err := m.runAcquireOnce(actx, &v, dest...)
	// A server that gives up a lock wait at once (MariaDB counts whole
	// seconds) is asked again until the bound has passed (lockwait.go).
	for m.d.eng.LockWaitTimeout(err) && m.bounded() && (!m.inTx || m.d.kind == "mysql") && time.Since(attempt) < lockWaitBound &&
		sleep(ctx, jitter(minBackoff)) == nil {
		found, err = m.runAcquireOnce(actx, &v, dest...)
	}
	cancel()
	if m.d.eng.LockWaitTimeout(err) {
		// Another transaction holds the row (or SQLite's write lock): the
		// name is held; the statement gave up and changed nothing.
		m.event(ctx, m.hooks.OnContended, &Lock{Name: name}, start, "lockmgr: contended")
		return nil, heldError(name)
	}
	won := err == nil && found && token == l.Token
	if won && ctx.Err() != nil { // the caller gave up meanwhile: give the lock back
		m.undo(ctx, l, nil)
		return nil, fmt.Errorf("lockmgr: acquire %q: %w", name, context.Cause(ctx))
	}
	if err != nil && !m.d.eng.Retryable(err, m.inTx) && !errors.Is(err, ErrSchema) && !errors.Is(err, ErrInvalidOption) {
		m.undo(ctx, l, err) // it may have committed before the error
	}
	if err != nil && m.d.eng.Retryable(err, m.inTx) {
		// Rolled back maxStatementAttempts times: concurrent acquisitions
		// (on Galera, on other nodes) kept winning the conflict.
		m.event(ctx, m.hooks.OnContended, &Lock{Name: name}, start, "lockmgr: contended")
		return nil, errors.Join(heldError(name), fmt.Errorf("lockmgr: acquire %q: %w", name, err))
	}
	if err != nil {
		return nil, fmt.Errorf("lockmgr: acquire %q: %w", name, err)
	}
	if !found || token != l.Token {
		m.event(ctx, m.hooks.OnContended, &Lock{Name: name}, start, "lockmgr: contended")
		return nil, heldError(name)
	}
	if err := setAcquiredTimes(l, m.d.clientClock, now, until, dbUntil, dbCreated); err != nil {
		return nil, fmt.Errorf("lockmgr: acquire %q: %w", name, err)
	}
	m.event(ctx, m.hooks.OnAcquire, l, start, "lockmgr: acquired")
	return l, nil
}

// detached is the context an acquisition attempt runs on: ctx's values
// without its cancellation, bounded by m.release.
func (m *Manager) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.release)
}

// graced is the context the begin and commit of lockmgr's own transactions
// run on (SetLock, RenewLock; see transaction): ctx's values without its
// cancellation, cut off only m.release after ctx ends. A long batch runs
// for as long as its caller waits, and a caller that gives up mid-commit
// does not leave rows the commit took with tokens nobody has.
func (m *Manager) graced(ctx context.Context) (context.Context, context.CancelFunc) {
	gctx, cut := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(m.release, func() { cut(context.DeadlineExceeded) })
		context.AfterFunc(gctx, func() { t.Stop() })
	})
	return gctx, func() { stop(); cut(context.Canceled) }
}

// undo releases l, an acquisition whose caller will not get it: won after
// the caller's context ended, or ended by an error (cause) after which the
// row may be held with l's token anyway (a reply lost to a broken
// connection, an attempt past m.release that the server may still
// commit). Nobody else has l's token, so the release cannot touch another
// holder. Inside the caller's transaction only a won lock is undone: a
// failed statement left nothing (MySQL, SQLite) or the transaction is
// aborted (PostgreSQL) and rolls back with its owner.
func (m *Manager) undo(ctx context.Context, l *Lock, cause error) {
	if cause != nil && m.inCallerTx() {
		return
	}
	rctx, cancel := m.detached(ctx)
	defer cancel()
	release := func() error {
		var v values
		v[aName], v[aToken] = l.Name, l.Token
		n, err := m.delete(rctx, m.d.release, m.d.releaseNotify, m.d.releaseWatched, &v)
		if n > 0 {
			wakeLocal(m.dbID, m.tableName, l.Name)
		}
		return err
	}
	err := release()
	if cause == nil {
		if err != nil {
			m.warn(ctx, "lockmgr: release of an abandoned acquisition failed", l.Name, err)
		}
		return
	}
	if errors.Is(cause, context.DeadlineExceeded) && err == nil {
		// The server may still be running the attempt that timed out:
		// look once more after a moment.
		if sleep(rctx, time.Second) == nil {
			err = release()
		}
	}
	if err != nil {
		m.warn(ctx, "lockmgr: release of a failed acquisition failed; the lock may be held until it expires", l.Name, err)
	}
}

// runAcquireOnce runs the acquisition and reads back the row as it stands;
// query and exec repeat a statement the database rolled back (InnoDB
// breaks deadlocks of a statement racing a release; Galera fails the later
// of two conflicting writes on different nodes). Without RETURNING (MySQL
// 8) a second statement reads the row back by token; an unchanged row (0
// affected) means the name is held.
func (m *Manager) runAcquireOnce(ctx context.Context, v *values, dest ...any) (bool, error) {
	if m.d.fenceBump.sql != "" {
		return m.acquireBumpingFence(ctx, v, dest...)
	}
	s := m.d.acquire
	if m.d.acquireExec.sql != "" && m.onGalera(ctx) { // see galera.go
		s = m.d.acquireExec
	} else if m.d.srv.returning {
		return m.query(ctx, s, v, dest...)
	}
	n, err := m.exec(ctx, s, v)
	if err != nil || n == 0 {
		return false, err
	}
	return m.query(ctx, m.d.readBack, v, dest...)
}

// setAcquiredTimes sets l's expiry and acquisition time: the ones this
// process passed (SQLite), or the ones the database returned.
func setAcquiredTimes(l *Lock, clientClock bool, now, until time.Time, dbUntil, dbCreated any) error {
	if clientClock {
		if !until.IsZero() {
			l.LockedUntil = &until
		}
		l.CreatedAt, l.UpdatedAt = now, now
		return nil
	}
	var err error
	if l.LockedUntil, err = toTime(dbUntil); err != nil {
		return err
	}
	t, err := toTime(dbCreated)
	if err == nil && t != nil {
		l.CreatedAt, l.UpdatedAt = *t, *t
	}
	return err
}
