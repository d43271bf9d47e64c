package lockmgr

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"gorm.io/gorm"
)

// serialized runs fn, a migration, so that one process at a time runs it
// against the table: in a transaction holding an advisory lock on
// PostgreSQL (whose DDL is transactional too), holding GET_LOCK on one
// connection on MySQL/MariaDB, in an immediate transaction on SQLite.
// Every step of fn is idempotent as well: Galera's GET_LOCK is node-local,
// and inside a caller's transaction (WithTx) fn runs in it unserialized.
func (m *Manager) serialized(ctx context.Context, fn func(context.Context, *gorm.DB) error) error {
	if m.inTx {
		return fn(ctx, m.conn(ctx))
	}
	switch m.d.kind {
	case "postgres":
		return m.conn(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", m.migrationKey()).Error; err != nil {
				return err
			}
			db := tx.Session(&gorm.Session{NewDB: true})
			return m.withLockWait(ctx, db, func() error { return fn(ctx, db) })
		})
	case "mysql":
		return m.onConn(ctx, m.withGetLock(fn))
	}
	return m.onConn(ctx, func(ctx context.Context, db *gorm.DB) error {
		return m.withLockWait(ctx, db, func() error { return m.immediate(fn)(ctx, db) })
	})
}

// migrationKey names the table's migration lock. PostgreSQL keeps
// single-key advisory locks apart from the two-key ones acquisitions take.
func (m *Manager) migrationKey() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("lockmgr migrate " + m.d.table))
	return int64(h.Sum64())
}

// onConn runs fn on one connection of the pool, given back afterwards. A
// connection fn cannot leave clean (a lock it could not release) is
// discarded instead.
func (m *Manager) onConn(ctx context.Context, fn func(context.Context, *gorm.DB) error) error {
	sqlDB, err := m.db.DB()
	if err != nil {
		return fn(ctx, m.conn(ctx)) // no *sql.DB to take a connection from: idempotent steps only
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	db := m.db.Session(&gorm.Session{NewDB: true, Context: ctx})
	db.Statement.ConnPool = conn
	if err := fn(ctx, db); err != nil {
		if errors.Is(err, errDirtyConn) {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return err
	}
	return nil
}

// errDirtyConn marks a connection that still holds a lock.
var errDirtyConn = errors.New("lockmgr: migration lock not released")

// migrationWait bounds the wait for another process's migration.
const migrationWait = 5 * time.Minute

// withGetLock holds a named server lock around fn, on fn's connection.
func (m *Manager) withGetLock(fn func(context.Context, *gorm.DB) error) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, db *gorm.DB) error {
		var name string
		err := db.Raw("SELECT CONCAT('lockmgr-migrate-', LEFT(SHA1(CONCAT(COALESCE(?, DATABASE()), '.', ?)), 40))",
			m.d.schema(m.tableName), m.d.bareTable(m.tableName)).Scan(&name).Error
		if err != nil {
			return err
		}
		got, err := m.getLock(ctx, db, name)
		if err != nil {
			return err
		}
		if got.Int64 != 1 {
			return fmt.Errorf("another process's migration of %s held the lock %q for %v", m.tableName, name, waitFor(ctx))
		}
		ferr := m.withLockWait(ctx, db, func() error { return fn(ctx, db) })
		if err := db.Session(&gorm.Session{Context: context.WithoutCancel(ctx)}).Exec("SELECT RELEASE_LOCK(?)", name).Error; err != nil {
			return errors.Join(ferr, errDirtyConn, err)
		}
		return ferr
	}
}

// getLock is GET_LOCK(name), tried again while TiDB, whose GET_LOCK is a
// pessimistic transaction of its own, reports a retryable conflict.
func (m *Manager) getLock(ctx context.Context, db *gorm.DB, name string) (sql.NullInt64, error) {
	deadline := time.Now().Add(waitFor(ctx))
	for {
		var got sql.NullInt64
		err := db.Raw("SELECT GET_LOCK(?, ?)", name, int(waitFor(ctx).Seconds())).Scan(&got).Error
		if err == nil || !m.d.eng.Retryable(err, false) || time.Now().After(deadline) {
			return got, err
		}
		if err := sleep(ctx, jitter(minBackoff)); err != nil {
			return got, err
		}
	}
}

// waitFor is how long a migration may wait for another: until ctx's
// deadline, at most migrationWait, at least a second.
func waitFor(ctx context.Context) time.Duration {
	d := migrationWait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Second)
}

// immediate runs fn in a transaction that takes SQLite's write lock at its
// start (BEGIN IMMEDIATE), retried while another process holds it.
func (m *Manager) immediate(fn func(context.Context, *gorm.DB) error) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, db *gorm.DB) error {
		deadline := time.Now().Add(waitFor(ctx))
		if m.mig.firstUse { // a first use gives up soon; AutoMigrate waits its turn
			deadline = time.Now().Add(m.mig.lockWait)
		}
		for {
			err := db.Exec("BEGIN IMMEDIATE").Error
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "locked") && !strings.Contains(err.Error(), "busy") || time.Now().After(deadline) {
				return err
			}
			if err := sleep(ctx, time.Duration(5+rand.IntN(20))*time.Millisecond); err != nil {
				return err
			}
		}
		err := fn(ctx, db)
		if err == nil {
			err = db.Exec("COMMIT").Error
		}
		if err != nil {
			if rerr := db.Session(&gorm.Session{Context: context.WithoutCancel(ctx)}).Exec("ROLLBACK").Error; rerr != nil &&
				!strings.Contains(rerr.Error(), "no transaction") {
				return errors.Join(err, errDirtyConn, rerr)
			}
		}
		return err
	}
}
