package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// TimeLayout is how Django, and lockmgr, write times to SQLite.
const TimeLayout = "2006-01-02 15:04:05.000000"

// Forms: SQLite bounds waits by its connection's busy_timeout (Bounded).
func (SQLite) Forms(string, Stmt, bool) Forms { return noForms() }

// TimeoutKeepsTx: no.
func (SQLite) TimeoutKeepsTx() bool { return false }

// Quote quotes an identifier.
func (SQLite) Quote(ident string) string { return `"` + ident + `"` }

// QuoteIndex quotes an index or trigger name, a schema's dot made an
// underscore.
func (SQLite) QuoteIndex(name string) string { return Postgres{}.QuoteIndex(name) }

// Placeholder is ?.
func (SQLite) Placeholder(int) string { return "?" }

// Prepares: yes, a lock cycle's statements cost less prepared once.
func (SQLite) Prepares(bool) bool { return true }

// Times are clock's, as UTC text: now (@now, and in microseconds @fence,
// the fence floor) and now+expires (@until; nil for no expiry).
func (SQLite) Times(clock func() time.Time, expires time.Duration) Times {
	now := clock().UTC().Truncate(time.Microsecond)
	t := Times{Now: now.Format(TimeLayout), Fence: now.UnixMicro(), ClientNow: now}
	if expires > 0 {
		t.ClientUntil = AddExpires(now, expires)
		t.Until = t.ClientUntil.Format(TimeLayout)
	}
	return t
}

// Acquire is one statement that returns the token and fence; the times
// are the ones t passed.
func (SQLite) Acquire(ctx context.Context, r Runner, t Times) (Acquired, bool, error) {
	a := Acquired{Created: t.ClientNow}
	if !t.ClientUntil.IsZero() {
		a.Until = t.ClientUntil
	}
	found, err := r.Query(ctx, StAcquire, &a.Token, &a.Fence)
	return a, found, err
}

// Renew: RenewMax returns the new expiry. SQLite's date functions work in
// whole milliseconds, so an AddTime renewal reads the expiry, adds in Go,
// and writes it back only if unchanged, again if it changed.
func (SQLite) Renew(ctx context.Context, r Runner, addTime bool, expires time.Duration) (any, bool, error) {
	if !addTime {
		return renewReturning(ctx, r, false)
	}
	for {
		var old *string
		found, err := r.Query(ctx, StReadUntil, &old)
		if err != nil || !found || old == nil {
			return nil, found, err // absent, or never expires: stays so
		}
		until, err := addExpiry(*old, expires)
		if err != nil {
			return nil, false, err
		}
		r.Set(ArgOld, *old)
		r.Set(ArgUntil, until)
		n, err := r.Exec(ctx, StCasUntil)
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
	t, err := ParseTime(old)
	if err != nil {
		return nil, err
	}
	base := time.Now().UTC()
	if t.After(base) {
		base = *t
	}
	return AddExpires(base, expires).Format(TimeLayout), nil
}

// Release counts the rows affected.
func (SQLite) Release(ctx context.Context, r Runner, s Stmt) (int64, error) { return r.Exec(ctx, s) }

// Bounded runs fn on one connection of the pool, in a transaction whose
// busy_timeout is bound; the connection's own is put back before the
// transaction ends. SQLite takes its write lock at the first write, as it
// does for the statement alone.
func (e SQLite) Bounded(ctx context.Context, p gorm.ConnPool, bound time.Duration, fn func(gorm.ConnPool) error) (err error) {
	restore, err := e.busyMS(ctx, p)
	if err != nil {
		return err
	}
	tx, err := beginOn(ctx, p)
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, "PRAGMA busy_timeout = "+ms(bound)); err == nil {
		err = fn(tx)
		if _, rerr := tx.ExecContext(ctx, "PRAGMA busy_timeout = "+restore); rerr != nil && err == nil {
			err = fmt.Errorf("lockmgr: restore busy_timeout: %w", rerr)
		}
	}
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// busyMS is the connections' busy_timeout, asked once.
func (e SQLite) busyMS(ctx context.Context, p gorm.ConnPool) (string, error) {
	if ms := e.busy.Load(); ms >= 0 {
		return strconv.FormatInt(ms, 10), nil
	}
	var ms int64
	if err := p.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		return "", fmt.Errorf("lockmgr: read busy_timeout: %w", err)
	}
	e.busy.Store(ms)
	return strconv.FormatInt(ms, 10), nil
}

// txPool is a transaction of the pool lock statements run on.
type txPool interface {
	gorm.ConnPool
	Commit() error
	Rollback() error
}

// beginOn begins a transaction on p: lockmgr's prepared pool (whose
// transactions use its prepared statements) or a *sql.DB.
func beginOn(ctx context.Context, p gorm.ConnPool) (txPool, error) {
	switch b := p.(type) {
	case gorm.ConnPoolBeginner:
		c, err := b.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if tx, ok := c.(txPool); ok {
			return tx, nil
		}
		return nil, errors.New("lockmgr: the pool's transaction cannot commit")
	case gorm.TxBeginner:
		tx, err := b.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return tx, nil
	}
	return nil, fmt.Errorf("lockmgr: cannot begin a transaction on %T", p)
}

var _ txPool = (*sql.Tx)(nil)

// InTx takes the database's write lock first, so two of lockmgr's
// transactions never deadlock upgrading a read lock, waiting for it no
// longer than the bound where own.
func (e SQLite) InTx(ctx context.Context, tx *gorm.DB, t Table, own bool, fn func() error) (err error) {
	if own {
		restore, err := e.busyMS(ctx, tx.Statement.ConnPool)
		if err != nil {
			return err
		}
		if err := tx.Exec("PRAGMA busy_timeout = " + ms(t.Bound)).Error; err != nil {
			return err
		}
		defer func() {
			if rerr := tx.Exec("PRAGMA busy_timeout = " + restore).Error; rerr != nil && err == nil {
				err = fmt.Errorf("lockmgr: restore busy_timeout: %w", rerr)
			}
		}()
	}
	if err := tx.Exec("DELETE FROM " + t.Name + " WHERE 0").Error; err != nil {
		return err
	}
	return fn()
}

// RowLocking: SQLite's write lock is the database's.
func (SQLite) RowLocking(bool) clause.Locking { return clause.Locking{Strength: "UPDATE"} }

// Synced: SQLite has no synced forms.
func (SQLite) Synced(context.Context, Conn) bool { return false }

// CatchUp: nothing to catch up with.
func (SQLite) CatchUp(context.Context, Conn) error { return nil }

// Version: nothing to ask.
func (SQLite) Version(context.Context, *gorm.DB) (string, error) { return "", nil }
