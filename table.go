package lockmgr

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/gormlock/lockmgr/internal/engine"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// cleanBatch is how many rows each of CleanLocks' statements deletes at
// most (a variable for tests).
var cleanBatch = 1000

// CleanLocks deletes the rows of expired locks and returns how many it
// deleted. Nothing else deletes expired rows: acquisition takes them over.
// It deletes in batches of cleanBatch rows, each its own statement (and,
// outside the caller's transaction, its own commit), so no statement locks
// every expired row or holds up lock traffic for long; it stops when a
// batch finds fewer, or between batches when ctx ends, returning ctx's
// error. On an error it returns the rows the batches before deleted, with
// the error. A batch waits for a row another transaction holds as a
// release does (lockwait.go); on PostgreSQL it skips such rows, which an
// acquisition is taking over.
func (m *Manager) CleanLocks(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := m.cleanOnce(ctx)
		total += n
		switch {
		case err != nil:
			return total, fmt.Errorf("lockmgr: clean: %w", err)
		case n < int64(cleanBatch):
			return total, nil
		case ctx.Err() != nil:
			return total, fmt.Errorf("lockmgr: clean: %w", context.Cause(ctx))
		}
	}
}

// cleanOnce deletes one batch of expired rows.
func (m *Manager) cleanOnce(ctx context.Context) (n int64, err error) {
	var v values
	m.d.fill(&v, 0)
	v[aLimit] = cleanBatch
	err = m.patiently(ctx, func() error {
		n, err = m.exec(ctx, m.d.clean, &v)
		return err
	})
	return n, err
}

// listPage is how many rows each of List's statements reads at most
// (a variable for tests).
var listPage = 1000

// List returns the live locks, ordered by name byte for byte. It reads
// them in pages of listPage rows, each one statement that walks the
// primary key's index from where the last ended, so no statement holds or
// sorts the whole table; the pages are not one snapshot: a lock taken or
// released while List runs may be in the result or not, but no name is in
// it twice.
func (m *Manager) List(ctx context.Context) ([]Lock, error) {
	var out []Lock
	for s, after := m.d.list, ""; ; s = m.d.listAfter {
		n, err := m.listPage(ctx, s, after, &out)
		if err != nil {
			return nil, fmt.Errorf("lockmgr: list: %w", err)
		}
		if n < listPage {
			break
		}
		after = out[len(out)-1].Name
	}
	// The index's order is the column's collation, which on PostgreSQL
	// need not be byte order.
	slices.SortFunc(out, func(a, b Lock) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// listPage appends to out up to listPage live locks, in the index's order,
// whose names come after after (s is d.listAfter) or from the first
// (d.list), and returns how many.
func (m *Manager) listPage(ctx context.Context, s stmt, after string, out *[]Lock) (n int, err error) {
	var v values
	m.d.fill(&v, 0)
	v[aAfter], v[aLimit] = after, listPage
	start := len(*out)
	err = m.run(ctx, func() error {
		rows, err := m.rows(ctx, s, &v)
		if err != nil {
			return err
		}
		defer rows.Close()
		for *out = (*out)[:start]; rows.Next(); {
			l, err := scanLock(rows)
			if err != nil {
				return err
			}
			*out = append(*out, *l)
		}
		return rows.Err()
	})
	return len(*out) - start, err
}

// Get returns the live lock holding name, in one statement, or an error
// matching ErrLockNotFound when the name is free (absent or expired). The
// Lock carries the holder's token: releasing it with Release acts as the
// holder would.
func (m *Manager) Get(ctx context.Context, name string) (*Lock, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	var v values
	m.d.fill(&v, 0)
	v[aName] = name
	var l *Lock
	err := m.run(ctx, func() error {
		rows, err := m.rows(ctx, m.d.get, &v)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			return rows.Err()
		}
		l, err = scanLock(rows)
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("lockmgr: get %q: %w", name, err)
	case l == nil:
		return nil, fmt.Errorf("%w: %q", ErrLockNotFound, name)
	}
	return l, nil
}

// Reset deletes every lock, live or not, whoever holds it, and returns how
// many it deleted.
func (m *Manager) Reset(ctx context.Context) (int64, error) {
	n, err := m.exec(ctx, m.d.reset, &values{})
	if err != nil {
		return 0, fmt.Errorf("lockmgr: reset: %w", err)
	}
	return n, nil
}

// transaction runs fn in a transaction (a savepoint under WithTx) with a
// Manager bound to it, as the engine begins one (engine.Engine.InTx: on
// SQLite it first takes the database's write lock, so two of them never
// deadlock upgrading a read lock).
//
// fn's statements run on ctx: a caller that gives up while they run (or
// wait for a row) rolls the transaction back, and has its answer by its
// deadline. The begin and the commit run on graced(ctx): a commit under
// way is not cut off when the caller gives up, which would leave the rows
// it took with tokens nobody has, but only m.release after.
func (m *Manager) transaction(ctx context.Context, fn func(tx *Manager) error) error {
	gctx, cancel := m.graced(ctx)
	defer cancel()
	return m.guard(ctx, func() error {
		return m.conn(gctx).Transaction(func(tx *gorm.DB) error {
			t := *m
			t.db, t.inTx, t.ownTx = tx.Session(&gorm.Session{NewDB: true}), true, m.bounded()
			return m.d.eng.InTx(ctx, tx, m.d.t, t.ownTx, func() error { return fn(&t) })
		})
	})
}

type lockedRow struct {
	lock *Lock
	live bool
}

// lockRows reads the rows of names, locking them for update in name order
// so that concurrent callers over overlapping names never deadlock.
func (m *Manager) lockRows(ctx context.Context, names []string) (map[string]lockedRow, error) {
	live := m.d.liveFlag
	var v values
	m.d.fill(&v, 0)
	out := make(map[string]lockedRow, len(names))
	if err := m.d.eng.CatchUp(ctx, mconn{m}); err != nil {
		return nil, err
	}
	for len(names) > 0 {
		chunk := names[:min(len(names), 1000)]
		names = names[len(chunk):]
		rows, err := m.conn(ctx).Table(m.tableName).Select(m.d.columns+", "+live.sql, live.bind(&v)...).
			Where("name IN ?", chunk).Order("name").Clauses(m.d.eng.RowLocking(m.bounded())).Rows()
		if err != nil {
			return nil, err
		}
		if err := collectRows(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func collectRows(rows *sql.Rows, out map[string]lockedRow) error {
	defer rows.Close()
	for rows.Next() {
		var live int
		l, err := scanLock(rows, &live)
		if err != nil {
			return err
		}
		out[l.Name] = lockedRow{lock: l, live: live == 1}
	}
	return rows.Err()
}

// scanLock reads one row of dialect.columns, then any extra columns.
func scanLock(rows *sql.Rows, extra ...any) (*Lock, error) {
	var l Lock
	var pid sql.NullInt64
	var until, created, updated any
	dest := append([]any{&l.Name, &l.LockedBy, &pid, &until, &l.Token, &l.Fence, &created, &updated}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	if pid.Valid {
		l.LockProcess = &pid.Int64
	}
	var err error
	var c, u *time.Time
	if l.LockedUntil, err = toTime(until); err != nil {
		return nil, err
	}
	if c, err = toTime(created); err != nil {
		return nil, err
	}
	if u, err = toTime(updated); err != nil {
		return nil, err
	}
	if c != nil {
		l.CreatedAt = *c
	}
	if u != nil {
		l.UpdatedAt = *u
	}
	return &l, nil
}

// toTime converts a timestamp as the engines return it (engine.ToTime).
func toTime(v any) (*time.Time, error) { return engine.ToTime(v) }
