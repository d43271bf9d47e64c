package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// The floor: lockmgr's hot paths as bare single statements through
// database/sql, each prepared once, on a table shaped as DESIGN.md's storage
// section describes. Nothing can take a cycle with less work on the same
// schema, so lockmgr's cost is reported as a multiple of it.

// floorDDL creates the floor's table for one database.
func floorDDL(t *target, table string) []string {
	q := t.quote(table)
	idx := t.quote(table + "_locked_until")
	switch t.kind {
	case dbPostgres:
		return []string{
			`CREATE TABLE ` + q + ` (
	name varchar(255) PRIMARY KEY,
	locked_by varchar(255),
	lock_process bigint,
	locked_until timestamptz,
	token varchar(64) NOT NULL DEFAULT '',
	fence bigint NOT NULL DEFAULT 0,
	created_at timestamptz,
	updated_at timestamptz)`,
			`CREATE INDEX ` + idx + ` ON ` + q + ` (locked_until)`,
		}
	case dbMySQL:
		return []string{`CREATE TABLE ` + q + ` (
	name varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL PRIMARY KEY,
	locked_by varchar(255),
	lock_process bigint,
	locked_until datetime(6) NULL,
	token varchar(64) NOT NULL DEFAULT '',
	fence bigint NOT NULL DEFAULT 0,
	created_at datetime(6),
	updated_at datetime(6),
	KEY ` + idx + ` (locked_until)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`}
	default:
		return []string{
			`CREATE TABLE ` + q + ` (
	name text NOT NULL PRIMARY KEY,
	locked_by text,
	lock_process integer,
	locked_until datetime,
	token text NOT NULL DEFAULT '',
	fence integer NOT NULL DEFAULT 0,
	created_at datetime,
	updated_at datetime) WITHOUT ROWID`,
			`CREATE INDEX ` + idx + ` ON ` + q + ` (locked_until)`,
		}
	}
}

// floorSQL is the floor's statements for one database.
type floorSQL struct {
	acquire string // takes a free or expired name; a held name: no row (PG, SQLite) or another token (MariaDB)
	release string // owner-checked delete
	upsert  string // SetLock's per-name create-or-extend
}

// The expiry test of each dialect, judged by the database's clock where the
// database has one of its own (DESIGN.md: "Expiry is judged by the database's
// clock on PostgreSQL and MySQL").
const (
	pgExpired    = `l.locked_until IS NOT NULL AND l.locked_until <= statement_timestamp()`
	myExpired    = `locked_until IS NOT NULL AND locked_until <= UTC_TIMESTAMP(6)`
	pgFenceClock = `(extract(epoch FROM statement_timestamp()) * 1000000)::bigint`
	myFenceClock = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))`
)

func newFloorSQL(t *target, table string) floorSQL {
	q := t.quote(table)
	cols := `(name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)`
	switch t.kind {
	case dbPostgres:
		ins := `INSERT INTO ` + q + ` AS l ` + cols + `
VALUES ($1, $2, $3, statement_timestamp() + make_interval(secs => $4), $5, ` + pgFenceClock + `, statement_timestamp(), statement_timestamp())
ON CONFLICT (name) DO UPDATE SET `
		return floorSQL{
			acquire: ins + `locked_by = EXCLUDED.locked_by, lock_process = EXCLUDED.lock_process,
	token = EXCLUDED.token, fence = GREATEST(l.fence + 1, EXCLUDED.fence),
	created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, locked_until = EXCLUDED.locked_until
WHERE ` + pgExpired + `
RETURNING fence`,
			release: `DELETE FROM ` + q + ` WHERE name = $1 AND token = $2`,
			upsert: ins + `
	token = CASE WHEN ` + pgExpired + ` THEN EXCLUDED.token ELSE l.token END,
	fence = CASE WHEN ` + pgExpired + ` THEN GREATEST(l.fence + 1, EXCLUDED.fence) ELSE l.fence END,
	updated_at = EXCLUDED.updated_at,
	locked_until = CASE WHEN l.locked_until IS NULL THEN NULL
		WHEN ` + pgExpired + ` THEN EXCLUDED.locked_until
		ELSE GREATEST(l.locked_until, EXCLUDED.locked_until) END
RETURNING token`,
		}
	case dbMySQL:
		ifExp := func(newV, oldV string) string { return `IF(` + myExpired + `, ` + newV + `, ` + oldV + `)` }
		ins := `INSERT INTO ` + q + ` ` + cols + `
VALUES (?, ?, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ` + myFenceClock + `, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE `
		// Assignments run left to right; locked_until goes last so that the
		// IF()s before it still see the old expiry (database-facts.md).
		return floorSQL{
			acquire: ins + `locked_by = ` + ifExp("VALUES(locked_by)", "locked_by") + `,
	lock_process = ` + ifExp("VALUES(lock_process)", "lock_process") + `,
	token = ` + ifExp("VALUES(token)", "token") + `,
	fence = ` + ifExp("GREATEST(fence + 1, VALUES(fence))", "fence") + `,
	created_at = ` + ifExp("VALUES(created_at)", "created_at") + `,
	updated_at = ` + ifExp("VALUES(updated_at)", "updated_at") + `,
	locked_until = ` + ifExp("VALUES(locked_until)", "locked_until") + `
RETURNING token, fence`,
			release: `DELETE FROM ` + q + ` WHERE name = ? AND token = ?`,
			upsert: ins + `token = ` + ifExp("VALUES(token)", "token") + `,
	fence = ` + ifExp("GREATEST(fence + 1, VALUES(fence))", "fence") + `,
	updated_at = VALUES(updated_at),
	locked_until = IF(locked_until IS NULL, NULL, ` + ifExp("VALUES(locked_until)", "GREATEST(locked_until, VALUES(locked_until))") + `)
RETURNING token`,
		}
	default:
		// SQLite has no clock but the client's; ?6 is now as UTC text.
		exp := q + `.locked_until IS NOT NULL AND ` + q + `.locked_until <= ?6`
		ins := `INSERT INTO ` + q + ` ` + cols + `
VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6)
ON CONFLICT (name) DO UPDATE SET `
		return floorSQL{
			acquire: ins + `locked_by = excluded.locked_by, lock_process = excluded.lock_process,
	token = excluded.token, fence = max(` + q + `.fence + 1, excluded.fence),
	created_at = excluded.created_at, updated_at = excluded.updated_at, locked_until = excluded.locked_until
WHERE ` + exp + `
RETURNING fence`,
			release: `DELETE FROM ` + q + ` WHERE name = ?1 AND token = ?2`,
			upsert: ins + `
	token = CASE WHEN ` + exp + ` THEN excluded.token ELSE ` + q + `.token END,
	fence = CASE WHEN ` + exp + ` THEN max(` + q + `.fence + 1, excluded.fence) ELSE ` + q + `.fence END,
	updated_at = excluded.updated_at,
	locked_until = CASE WHEN ` + q + `.locked_until IS NULL THEN NULL
		WHEN ` + exp + ` THEN excluded.locked_until
		ELSE max(` + q + `.locked_until, excluded.locked_until) END
RETURNING token`,
		}
	}
}

// floorLocker runs floorSQL through prepared statements.
type floorLocker struct {
	t                        *target
	table                    string
	acquire, release, upsert *sql.Stmt
	owner                    string
	pid                      int64
}

// floorHeld is what the floor's lock returns.
type floorHeld struct {
	name, token string
	fence       int64
}

func newFloorLocker(ctx context.Context, t *target, table string, create bool) (*floorLocker, error) {
	if create {
		if err := t.exec(ctx, floorDDL(t, table)...); err != nil {
			return nil, fmt.Errorf("floor table: %w", err)
		}
	}
	s := newFloorSQL(t, table)
	host, _ := os.Hostname()
	f := &floorLocker{t: t, table: table, owner: host, pid: int64(os.Getpid())}
	var err error
	if f.acquire, err = t.sqlDB.PrepareContext(ctx, s.acquire); err != nil {
		return nil, fmt.Errorf("floor acquire: %w", err)
	}
	if f.release, err = t.sqlDB.PrepareContext(ctx, s.release); err != nil {
		return nil, fmt.Errorf("floor release: %w", err)
	}
	if f.upsert, err = t.sqlDB.PrepareContext(ctx, s.upsert); err != nil {
		return nil, fmt.Errorf("floor upsert: %w", err)
	}
	return f, nil
}

func (f *floorLocker) label() string { return lkFloor }

func (f *floorLocker) session(context.Context) (session, error) { return sharedSession{f}, nil }

// args are the statement arguments of acquire and upsert.
func (f *floorLocker) args(name, token string, ttl time.Duration) []any {
	switch f.t.kind {
	case dbPostgres:
		return []any{name, f.owner, f.pid, ttl.Seconds(), token}
	case dbMySQL:
		return []any{name, f.owner, f.pid, ttl.Microseconds(), token}
	default:
		now := time.Now()
		return []any{name, f.owner, f.pid, f.t.timeArg(now.Add(ttl)), token, f.t.timeArg(now), now.UnixMicro()}
	}
}

func (f *floorLocker) lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error) {
	if wait > 0 {
		return nil, errNoWait
	}
	h := floorHeld{name: name, token: newToken()}
	row := f.acquire.QueryRowContext(ctx, f.args(name, h.token, ttl)...)
	var err error
	if f.t.kind == dbMySQL {
		var got string
		err = row.Scan(&got, &h.fence)
		if err == nil && got != h.token {
			return nil, errHeld
		}
	} else {
		err = row.Scan(&h.fence)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errHeld
	}
	if err != nil {
		return nil, describe(lkFloor, err)
	}
	return h, nil
}

func (f *floorLocker) unlock(ctx context.Context, held any) error {
	h := held.(floorHeld)
	res, err := f.release.ExecContext(ctx, h.name, h.token)
	if err != nil {
		return describe(lkFloor, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("floor: release of %q affected %d rows (%v)", h.name, n, err)
	}
	return nil
}

// setLock is SetLock's floor: one transaction, one prepared upsert per name.
func (f *floorLocker) setLock(ctx context.Context, names []string, ttl time.Duration) error {
	tx, err := f.t.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return describe(lkFloor, err)
	}
	defer func() { _ = tx.Rollback() }()
	st := tx.StmtContext(ctx, f.upsert)
	for _, name := range names {
		var got string
		if err := st.QueryRowContext(ctx, f.args(name, newToken(), ttl)...).Scan(&got); err != nil {
			return describe(lkFloor, err)
		}
	}
	return describe(lkFloor, tx.Commit())
}

func (f *floorLocker) clear(ctx context.Context) error {
	return f.t.exec(ctx, "DELETE FROM "+f.t.quote(f.table))
}

func (f *floorLocker) close() error {
	return errors.Join(f.acquire.Close(), f.release.Close(), f.upsert.Close())
}
