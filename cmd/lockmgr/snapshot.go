package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gormlock/lockmgr"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// snapshot is every row of the lock table, live or expired, read together
// with the database's clock, so that "expired" and "held for" are judged
// the way the database judges them in GetLock.
type snapshot struct {
	Now  time.Time      // the database's clock when the rows were read (UTC)
	Rows []lockmgr.Lock // ordered by name, byte for byte; expired rows included
}

// live reports whether l has not expired at s.Now.
func (s *snapshot) live(l *lockmgr.Lock) bool {
	return l.LockedUntil == nil || l.LockedUntil.After(s.Now)
}

// Live returns the rows that have not expired, whose name starts with prefix.
func (s *snapshot) Live(prefix string) []lockmgr.Lock {
	var out []lockmgr.Lock
	for i := range s.Rows {
		if s.live(&s.Rows[i]) && strings.HasPrefix(s.Rows[i].Name, prefix) {
			out = append(out, s.Rows[i])
		}
	}
	return out
}

// Expired counts the rows that have expired but are still in the table.
func (s *snapshot) Expired() int {
	n := 0
	for i := range s.Rows {
		if !s.live(&s.Rows[i]) {
			n++
		}
	}
	return n
}

// lockColumns are the columns readRows reads, in scan order.
const lockColumns = "name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at"

// readSnapshot reads every row of table (only the row called name when
// name is not empty) and the database's clock.
func readSnapshot(ctx context.Context, db *gorm.DB, table, name string) (*snapshot, error) {
	now, err := dbNow(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("reading the database's clock: %w", err)
	}
	q := db.WithContext(ctx).Table(table).Select(lockColumns)
	if name != "" {
		q = q.Where("name = ?", name)
	}
	rows, err := q.Rows()
	if err != nil {
		return nil, fmt.Errorf("reading table %q: %w", table, err)
	}
	defer func() { _ = rows.Close() }()
	s := &snapshot{Now: now}
	for rows.Next() {
		l, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("reading table %q: %w", table, err)
		}
		s.Rows = append(s.Rows, *l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading table %q: %w", table, err)
	}
	sort.Slice(s.Rows, func(i, j int) bool { return s.Rows[i].Name < s.Rows[j].Name })
	return s, nil
}

// dbNow is the database's clock. SQLite has none of its own: lockmgr's
// SQLite statements judge expiry by the client's clock, so this one does too.
func dbNow(ctx context.Context, db *gorm.DB) (time.Time, error) {
	var query string
	switch db.Dialector.Name() {
	case "postgres":
		query = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
	case "mysql":
		query = "SELECT UTC_TIMESTAMP(6)"
	default:
		return time.Now().UTC(), nil
	}
	var v any
	if err := db.WithContext(ctx).Raw(query).Row().Scan(&v); err != nil {
		return time.Time{}, err
	}
	t, err := engine.ToTime(v)
	if err != nil || t == nil {
		return time.Time{}, errors.Join(errors.New("no time"), err)
	}
	return *t, nil
}

// scanRow reads one row of lockColumns.
func scanRow(rows *sql.Rows) (*lockmgr.Lock, error) {
	var l lockmgr.Lock
	var pid sql.NullInt64
	var by, token sql.NullString
	var until, created, updated any
	if err := rows.Scan(&l.Name, &by, &pid, &until, &token, &l.Fence, &created, &updated); err != nil {
		return nil, err
	}
	l.LockedBy, l.Token = by.String, token.String
	if pid.Valid {
		l.LockProcess = &pid.Int64
	}
	var err error
	if l.LockedUntil, err = engine.ToTime(until); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		v   any
		dst *time.Time
	}{{created, &l.CreatedAt}, {updated, &l.UpdatedAt}} {
		t, err := engine.ToTime(f.v)
		if err != nil {
			return nil, err
		}
		if t != nil {
			*f.dst = *t
		}
	}
	return &l, nil
}
