package engine

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// MySQL is MySQL, MariaDB (Galera nodes included) and, with TiDB set,
// TiDB: the servers behind GORM's "mysql" dialector, whose errors read
// "Error <number> …". Its Galera parts are in mysql_galera.go, TiDB's in
// mysql_tidb.go, its migration in mysql_migrate.go.
type MySQL struct {
	TiDB bool // a TiDB server, with write conflicts of its own
	// Returning: the server takes INSERT … RETURNING (MariaDB 10.5+);
	// elsewhere an acquisition reads its row back by token (ReadBack).
	Returning bool
	// MariaDB: the server may be a Galera node (galera asks on first use).
	MariaDB       bool
	NameCollation string // binary NO PAD where the server has it
	galera        *probe
}

func newMySQL(srv Server) MySQL {
	return MySQL{TiDB: srv.TiDB, Returning: srv.Returning, MariaDB: srv.MariaDB,
		NameCollation: srv.NameCollation, galera: &probe{}}
}

// Retryable: 1213 (deadlock found; on Galera also a certification
// conflict) outside a caller's transaction, which the server aborted
// whole. TiDB adds 9007 (write conflict, optimistic mode), 8022 (retry the
// transaction) and a pessimistic lock that kept meeting new writes. A
// lock-wait timeout (1205) is not repeated: another transaction holds the
// row (LockWaitTimeout).
func (e MySQL) Retryable(err error, inTx bool) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "40P01", "40001"); ok {
		return m
	}
	msg := err.Error()
	return !inTx && (strings.Contains(msg, "Error 1213") ||
		e.TiDB && (strings.Contains(msg, "Error 9007") || strings.Contains(msg, "Error 8022") ||
			strings.Contains(msg, "pessimistic lock retry limit reached")))
}

// LockWaitTimeout: 1205 (lock wait timeout: MySQL, MariaDB, TiDB); 3572
// (NOWAIT: MySQL 8, TiDB).
func (MySQL) LockWaitTimeout(err error) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "55P03"); ok {
		return m
	}
	msg := err.Error()
	return strings.Contains(msg, "Error 1205") || strings.Contains(msg, "Error 3572")
}

// LockBusy: 1205 (lock_wait_timeout, which bounds waits for a table's
// metadata lock).
func (MySQL) LockBusy(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, "55P03"); m {
		return true
	}
	return strings.Contains(err.Error(), "Error 1205")
}

// SchemaShaped: unknown column, no such table, data too long; on TiDB,
// schema changed (8113 wraps a 1146) and information schema changed
// during the statement.
func (MySQL) SchemaShaped(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, pgSchemaStates...); m {
		return true
	}
	return containsAny(err.Error(), "Error 1054 ", "Error 1146 ", "Error 1406 ", "Error 8113 ", "Error 8028 ")
}

// myMicros reads a timestamp column as microseconds since the epoch.
func myMicros(col string) string { return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', " + col + ")" }

// myColumns reads a whole lock row, its times as microseconds.
var myColumns = "name, COALESCE(locked_by, ''), lock_process, " + myMicros("locked_until") + ", token, fence, " +
	myMicros("created_at") + ", " + myMicros("updated_at")

// myLive is true for a row that has not expired by the database's clock.
const myLive = `(locked_until IS NULL OR locked_until > UTC_TIMESTAMP(6))`

// Statements are MySQL's, MariaDB's and TiDB's. Expiry is judged by the
// database's clock (UTC_TIMESTAMP(6)) and times are read back as
// microseconds. On MySQL and MariaDB, an acquisition's fence is only a
// floor: the BEFORE INSERT trigger raises it above its bucket's high-water
// mark, which certification orders on Galera whatever a node's clock says.
// MySQL has no UPDATE … RETURNING: a renewal's new expiry comes back
// through LAST_INSERT_ID(expr), 0 meaning no row matched.
func (e MySQL) Statements(t Table) Statements {
	s := Statements{
		Columns: myColumns,
		Acquire: t.sql(e.acquire(e.Returning)),
		ReadBack: t.sql(`SELECT token, fence, ` + myMicros("locked_until") + `, ` + myMicros("created_at") +
			` FROM {table} WHERE name = @name AND token = @token`),
		Release:  t.sql(`DELETE FROM {table} WHERE name = @name AND token = @token`),
		Unlock:   t.sql(`DELETE FROM {table} WHERE name = @name`),
		LiveFlag: `CASE WHEN ` + myLive + ` THEN 1 ELSE 0 END`,
		IsLocked: t.sql(`SELECT COUNT(*) FROM {table} WHERE name = @name AND ` + myLive),
		Get:      t.sql(`SELECT ` + myColumns + ` FROM {table} WHERE name = @name AND ` + myLive),
		List:     t.sql(`SELECT ` + myColumns + ` FROM {table} WHERE ` + myLive + ` ORDER BY name LIMIT @limit`),
		ListAfter: t.sql(`SELECT ` + myColumns + ` FROM {table}
			WHERE name > @after AND ` + myLive + ` ORDER BY name LIMIT @limit`),
		RenewMax: t.sql(myRenew(`GREATEST(locked_until, DATE_ADD(UTC_TIMESTAMP(6), INTERVAL @micros MICROSECOND))`)),
		RenewAdd: t.sql(myRenew(`DATE_ADD(GREATEST(locked_until, UTC_TIMESTAMP(6)), INTERVAL @micros MICROSECOND)`)),
		// MySQL takes no LIMIT in an IN subquery; the ORDER BY, the index's
		// own, makes the statement safe for statement-based replication.
		Clean: t.sql(`DELETE FROM {table} WHERE locked_until <= UTC_TIMESTAMP(6) ORDER BY locked_until, name LIMIT @limit`),
		Reset: t.sql(`DELETE FROM {table} WHERE true`),
		ReleaseHold: t.sql(`UPDATE {table} SET locked_until = ` + myHeldUntil + `, updated_at = UTC_TIMESTAMP(6)
			WHERE name = @name AND token = @token AND ` + myHeldUntil + ` > UTC_TIMESTAMP(6)`),
		Semaphore: t.sql(`SELECT ` + myColumns + ` FROM {table}
			WHERE (name IN (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT CONCAT(@name, '#', i) FROM g) OR name = @marker) AND ` + myLive),
		SemaphoreFree: t.sql(`SELECT -1, COALESCE(locked_by, '') FROM {table} WHERE name = @marker AND ` + myLive + `
			UNION ALL SELECT i, '' FROM (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT i FROM g WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE name = CONCAT(@name, '#', g.i) AND ` + myLive + `)
				ORDER BY RAND() LIMIT @limit) f`),
	}
	if e.Returning {
		s.AcquireExec = t.sql(e.acquire(false))
	}
	if e.TiDB {
		s.FenceBump = t.sql(`UPDATE ` + tidbFenceBump)
		s.FenceBumpBounded = t.sql(`UPDATE /*+ SET_VAR(innodb_lock_wait_timeout=1) */ ` + tidbFenceBump)
		s.NoWait = t.sql(`SELECT 1 FROM {table} WHERE name = @name FOR UPDATE NOWAIT`)
	}
	// updated_at moves at least a microsecond, so the row always changes:
	// an unchanged row is not counted as affected, nor certified on Galera.
	s.Guard = t.sql(`UPDATE {table}
		SET updated_at = GREATEST(UTC_TIMESTAMP(6), COALESCE(updated_at, UTC_TIMESTAMP(6)) + INTERVAL 1 MICROSECOND)
		WHERE name = @name AND token = @token AND ` + myLive)
	t.guardMiss(&s, myLive)
	t.clientAddTime(&s)
	return s
}

// acquire is the upsert, returning the row as it then stands if
// returning. A later assignment sees the columns already assigned, so
// locked_until, which decides "expired", is assigned last.
func (e MySQL) acquire(returning bool) string {
	source := `VALUES (@name, @by, @pid, DATE_ADD(UTC_TIMESTAMP(6), INTERVAL @micros MICROSECOND), @token,
		TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`
	if e.TiDB { // the fence from the bucket that FenceBump raised, locked
		source = `SELECT @name, @by, @pid, DATE_ADD(UTC_TIMESTAMP(6), INTERVAL @micros MICROSECOND), @token,
			hwm, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
			FROM {fences} WHERE id = CRC32(@name) % {buckets} FOR UPDATE`
	}
	q := `INSERT INTO {table} (name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at) ` + source + `
		ON DUPLICATE KEY UPDATE
			locked_by = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(locked_by), locked_by),
			lock_process = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(lock_process), lock_process),
			token = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(token), token),
			fence = IF(locked_until <= UTC_TIMESTAMP(6), GREATEST(fence + 1, VALUES(fence)), fence),
			created_at = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(created_at), created_at),
			updated_at = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(updated_at), updated_at),
			locked_until = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(locked_until), locked_until)`
	if returning {
		q += ` RETURNING token, fence, ` + myMicros("locked_until") + `, ` + myMicros("created_at")
	}
	return q
}

// myHeldUntil is the end of a HoldAtLeast: the acquisition plus @hold.
const myHeldUntil = `DATE_ADD(created_at, INTERVAL @hold MICROSECOND)`

// myRenew is the owner-checked renewal to the expiry extended, never
// shortening a lock and keeping a never-expiring one so; a renewal with no
// expiry (@micros NULL) makes the lock never expire. fence + 0 *
// LAST_INSERT_ID(…) carries the new expiry back (1: never); assigned
// first, it reads the old locked_until under any sql_mode.
func myRenew(extended string) string {
	newUntil := `CASE WHEN locked_until IS NULL OR @micros IS NULL THEN NULL ELSE ` + extended + ` END`
	return `UPDATE {table}
		SET fence = fence + 0 * LAST_INSERT_ID(COALESCE(` + myMicros(newUntil) + `, 1)),
			locked_until = ` + newUntil + `, updated_at = UTC_TIMESTAMP(6)
		WHERE name = @name AND token = @token`
}

// TimeoutKeepsTx: yes, InnoDB undoes only the statement that gave up.
func (MySQL) TimeoutKeepsTx() bool { return true }

// Quote quotes an identifier.
func (MySQL) Quote(ident string) string { return "`" + ident + "`" }

// QuoteIndex quotes an index or trigger name.
func (MySQL) QuoteIndex(name string) string { return "`" + name + "`" }

// Placeholder is ?.
func (MySQL) Placeholder(int) string { return "?" }

// Prepares: unless the driver interpolates values itself
// (InterpolateParams), which costs no round trip to prepare.
func (MySQL) Prepares(interpolates bool) bool { return !interpolates }

// Times: expiry is judged by the database's clock.
func (MySQL) Times(_ func() time.Time, expires time.Duration) Times { return serverTimes(expires) }

// Acquire: with RETURNING (MariaDB 10.5+) one statement; elsewhere, and
// on a Galera node (mysql_galera.go), the upsert and a read-back by token,
// an unchanged row (0 affected) meaning the name is held; on TiDB a
// transaction that first raises the fence bucket (mysql_tidb.go).
func (e MySQL) Acquire(ctx context.Context, r Runner, _ Times) (Acquired, bool, error) {
	switch {
	case e.TiDB:
		return e.acquireBumpingFence(ctx, r)
	case !e.Returning:
		return acquireThenRead(ctx, r, StAcquire)
	case e.Synced(ctx, r):
		return acquireThenRead(ctx, r, StAcquireExec)
	}
	return acquireReturning(ctx, r)
}

// Renew: MySQL has no UPDATE … RETURNING; the new expiry comes back
// through LAST_INSERT_ID(expr), 0 meaning no row matched, 1 no expiry.
func (MySQL) Renew(ctx context.Context, r Runner, addTime bool, _ time.Duration) (any, bool, error) {
	s := StRenewMax
	if addTime {
		s = StRenewAdd
	}
	res, err := r.Result(ctx, s)
	if err != nil {
		return nil, false, err
	}
	return lastInsertUntil(res)
}

// lastInsertUntil reads a renewal's new expiry from its LAST_INSERT_ID.
func lastInsertUntil(res sql.Result) (any, bool, error) {
	id, err := res.LastInsertId()
	switch {
	case err != nil || id == 0:
		return nil, false, err
	case id == 1:
		return nil, true, nil // never expires
	}
	return id, true, nil
}

// Release counts the rows affected.
func (MySQL) Release(ctx context.Context, r Runner, s Stmt) (int64, error) { return r.Exec(ctx, s) }

// Bounded is p: the statement's text bounds its waits (Forms).
func (MySQL) Bounded(_ context.Context, p gorm.ConnPool, _ time.Duration) (gorm.ConnPool, func(error) error, error) {
	return p, nil, nil
}

// InTx runs fn: the statements' forms bound their waits.
func (MySQL) InTx(_ context.Context, _ *gorm.DB, _ Table, _ bool, fn func() error) error { return fn() }

// RowLocking: on MariaDB, where bounded, FOR UPDATE waits 1 s at most
// (whole seconds; 0 would never join the row's queue of waiters).
func (e MySQL) RowLocking(bounded bool) clause.Locking {
	if bounded && e.MariaDB && !e.TiDB {
		return clause.Locking{Strength: "UPDATE", Options: "WAIT 1"}
	}
	return clause.Locking{Strength: "UPDATE"}
}

// Version: GORM's driver recorded it when it connected (Detect).
func (MySQL) Version(context.Context, *gorm.DB) (string, error) { return "", nil }

// TooLong: 1406 (data too long).
func (MySQL) TooLong(err error) bool { return tooLong(err) }
