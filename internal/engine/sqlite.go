package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// SQLite is SQLite, whose driver's errors are its messages. Times come
// from the client's clock, as UTC text.
type SQLite struct {
	// busy is the busy_timeout of the Manager's connections, read once
	// (the DSN's _busy_timeout sets the same on every one), to put back
	// after a bounded statement; -1 until read.
	busy *atomic.Int64
}

func newSQLite() SQLite {
	s := SQLite{busy: new(atomic.Int64)}
	s.busy.Store(-1)
	return s
}

// Retryable: nothing. SQLite has no deadlocks to break, and a lock-wait
// timeout ("database is locked") is not repeated: another transaction
// holds the database's write lock (LockWaitTimeout).
func (SQLite) Retryable(err error, _ bool) bool {
	m, _ := byState(err, "40P01", "40001")
	return m
}

// LockWaitTimeout: the busy timeout ran out on the database's or a
// table's lock.
func (SQLite) LockWaitTimeout(err error) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "55P03"); ok {
		return m
	}
	return containsAny(err.Error(), "database is locked", "database table is locked")
}

// LockBusy: the busy timeout ran out.
func (SQLite) LockBusy(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, "55P03"); m {
		return true
	}
	return containsAny(err.Error(), "database is locked", "SQLITE_BUSY")
}

// SchemaShaped: no such table or column, or a table without the unique
// key ON CONFLICT names.
func (SQLite) SchemaShaped(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, pgSchemaStates...); m {
		return true
	}
	return containsAny(err.Error(), "no such table", "no such column", "has no column named", "ON CONFLICT clause does not match")
}

// sqliteHeldUntil is the end of a HoldAtLeast, the acquisition plus
// @hold microseconds, as UTC text. SQLite's date functions work in whole
// milliseconds (and round created_at's microseconds to the nearest one),
// so the hold is rounded up to a millisecond and one more is added: the
// lock is held at least as long as asked.
const sqliteHeldUntil = `(strftime('%Y-%m-%d %H:%M:%f', created_at, '+' || (((@hold + 1999) / 1000) / 1000.0) || ' seconds') || '000')`

// sqliteColumns reads times as the text they are stored as.
const sqliteColumns = `name, COALESCE(locked_by, ''), lock_process, locked_until, token, fence, created_at, updated_at`

// sqliteLive is true for a row that has not expired by @now, the client's
// clock as UTC text.
const sqliteLive = `(locked_until IS NULL OR locked_until > @now)`

// Statements are SQLite's. Times come from the client as UTC text (@now,
// @until), the form Django writes; an acquisition's fence is the side
// table's high-water mark plus one, read under SQLite's write lock, and at
// least the clock in microseconds (@fence): a fence from the clock alone
// could be taken before a wait for that lock, and so fall below one
// written (and deleted) meanwhile. AddTime renewals are done in the
// client (ReadUntil, CasUntil): SQLite's date functions work in whole
// milliseconds.
func (SQLite) Statements(t Table) Statements {
	s := Statements{
		Columns: sqliteColumns,
		Acquire: t.sql(`
			INSERT INTO {table} (name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)
			VALUES (@name, @by, @pid, @until, @token,
				MAX(@fence, COALESCE((SELECT hwm FROM {fences} WHERE id = 1), 0) + 1), @now, @now)
			ON CONFLICT (name) DO UPDATE SET locked_by = excluded.locked_by, lock_process = excluded.lock_process,
				locked_until = excluded.locked_until, token = excluded.token, fence = MAX(fence + 1, excluded.fence),
				created_at = excluded.created_at, updated_at = excluded.updated_at
			WHERE locked_until <= @now
			RETURNING token, fence`),
		ReadBack: t.sql(`SELECT token, fence, locked_until, created_at FROM {table} WHERE name = @name AND token = @token`),
		Release:  t.sql(`DELETE FROM {table} WHERE name = @name AND token = @token`),
		Unlock:   t.sql(`DELETE FROM {table} WHERE name = @name`),
		LiveFlag: `CASE WHEN ` + sqliteLive + ` THEN 1 ELSE 0 END`,
		IsLocked: t.sql(`SELECT COUNT(*) FROM {table} WHERE name = @name AND ` + sqliteLive),
		Get:      t.sql(`SELECT ` + sqliteColumns + ` FROM {table} WHERE name = @name AND ` + sqliteLive),
		List:     t.sql(`SELECT ` + sqliteColumns + ` FROM {table} WHERE ` + sqliteLive + ` ORDER BY name LIMIT @limit`),
		ListAfter: t.sql(`SELECT ` + sqliteColumns + ` FROM {table}
			WHERE name > @after AND ` + sqliteLive + ` ORDER BY name LIMIT @limit`),
		RenewMax: t.sql(`
			UPDATE {table} SET locked_until = CASE WHEN locked_until IS NULL OR @until IS NULL THEN NULL
				ELSE MAX(locked_until, @until) END, updated_at = @now
			WHERE name = @name AND token = @token
			RETURNING locked_until`),
		// By name, not rowid: a table may be WITHOUT ROWID.
		Clean: t.sql(`DELETE FROM {table} WHERE name IN (SELECT name FROM {table} WHERE locked_until <= @now LIMIT @limit)`),
		Reset: t.sql(`DELETE FROM {table} WHERE true`),
		ReleaseHold: t.sql(`UPDATE {table} SET locked_until = ` + sqliteHeldUntil + `, updated_at = @now
			WHERE name = @name AND token = @token AND ` + sqliteHeldUntil + ` > @now`),
		Semaphore: t.sql(`SELECT ` + sqliteColumns + ` FROM {table}
			WHERE (name IN (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT @name || '#' || i FROM g) OR name = @marker) AND ` + sqliteLive),
		SemaphoreFree: t.sql(`SELECT -1, COALESCE(locked_by, '') FROM {table} WHERE name = @marker AND ` + sqliteLive + `
			UNION ALL SELECT i, '' FROM (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT i FROM g WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE name = @name || '#' || g.i AND ` + sqliteLive + `)
				ORDER BY random() LIMIT @limit)`),
	}
	// The first write of GORM's deferred transaction: it takes the
	// database's write lock at once, not at the caller's first write.
	s.Guard = t.sql(`UPDATE {table} SET updated_at = @now WHERE name = @name AND token = @token AND ` + sqliteLive)
	t.guardMiss(&s, sqliteLive)
	t.clientAddTime(&s)
	return s
}

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

// Bounded is a transaction on one connection of the pool whose
// busy_timeout is bound; done puts the connection's own back, then commits
// (or rolls back after an error). SQLite takes its write lock at the first
// write, as it does for the statement alone.
func (e SQLite) Bounded(ctx context.Context, p gorm.ConnPool, bound time.Duration) (gorm.ConnPool, func(error) error, error) {
	restore, err := e.busyMS(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	tx, err := beginOn(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	if _, err = tx.ExecContext(ctx, "PRAGMA busy_timeout = "+ms(bound)); err != nil {
		_ = tx.Rollback()
		return nil, nil, err
	}
	return tx, func(err error) error {
		if _, rerr := tx.ExecContext(ctx, "PRAGMA busy_timeout = "+restore); rerr != nil && err == nil {
			err = fmt.Errorf("lockmgr: restore busy_timeout: %w", rerr)
		}
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}, nil
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

// TooLong: SQLite does not enforce widths; as the others, for a driver
// that reports one.
func (SQLite) TooLong(err error) bool { return tooLong(err) }
