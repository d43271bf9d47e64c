package lockmgr

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

// Another transaction can hold a lock row for as long as it stays open: a
// caller's WithTx transaction that took or renewed a name and has not
// committed, or on SQLite any open write transaction, which holds the
// database's write lock. A lock statement run outside the caller's
// transaction does not wait for it beyond lockWaitBound: the server itself
// ends the wait, so the statement ends cleanly, having changed nothing
// (cancelling it from Go would leave its outcome unknown). Such a statement
// found the name held: an acquisition answers ErrLocked (with Wait, the
// wait goes on), and nothing repeats it (retrying). Per database:
//
//   - PostgreSQL: set_config('lock_timeout', lockWaitBound, true), evaluated
//     in the statement before it takes any lock; it lasts until the end of
//     the statement's own transaction (@bounded). SQLSTATE 55P03.
//   - MariaDB: SET STATEMENT innodb_lock_wait_timeout=0 FOR …, combined
//     with Galera's wsrep_sync_wait (galera.go). The server counts whole
//     seconds, so 0 (give up at once) is its only setting within the bound;
//     tryAcquire repeats an acquisition that gave up until lockWaitBound
//     has passed since the attempt began. Error 1205. A holder's statements
//     (release, renewal, CleanLocks) and lockmgr's own transactions wait
//     up to 1 s instead (mariadbTxBound): one that gives up at once never
//     joins the row's queue of waiters, and loses it to every transaction
//     that does.
//   - TiDB: the same SET STATEMENT is not available, its lock waits count
//     whole seconds, and an autocommit statement ignores them. Its
//     acquisition, a transaction (acquireBumpingFence), first locks the
//     name's row with FOR UPDATE NOWAIT (error 3572), asked again as
//     MariaDB's is; its fence bucket waits 1 s at most. A holder's autocommit statements wait
//     for the holding transaction or for their caller's deadline.
//   - MySQL 8: its SET_VAR hint does not take InnoDB variables, and
//     innodb_lock_wait_timeout counts whole seconds from 1, so a statement
//     waits the session's innodb_lock_wait_timeout (50 s by default) once,
//     never more: 1205 is answered as ErrLocked and not repeated.
//     Set innodb_lock_wait_timeout=1 for lockmgr's connections there.
//   - SQLite: busy_timeout, a connection setting, is lowered to the bound
//     around the statement, in a transaction on one connection, and put
//     back before it commits (sqliteBounded). "database is locked".
//
// Inside the caller's transaction nothing is bounded: a lock timeout would
// abort the caller's whole transaction on PostgreSQL, and its waits are
// the caller's to choose; the caller's own settings stay as they were.
// Reads (IsLocked, Get, List) take no row locks and never wait.
const lockWaitBound = 50 * time.Millisecond

// pgLockTimeout is lockWaitBound as PostgreSQL's lock_timeout.
var pgLockTimeout = strconv.FormatInt(lockWaitBound.Milliseconds(), 10) + "ms"

// mariadbBound gives up a row-lock wait at once (whole seconds, 0 = none).
const mariadbBound = "innodb_lock_wait_timeout=0"

// bounded reports whether m's statements give up waiting for another
// transaction's lock after lockWaitBound: outside the caller's transaction,
// and inside lockmgr's own.
func (m *Manager) bounded() bool {
	return m.ownTx || !m.inTx && !inTransaction(m.pool())
}

// sqliteBusy is the busy_timeout of the Manager's SQLite connections, read
// once (the DSN's _busy_timeout sets the same on every one), to put back
// after a bounded statement; -1 until read.
type sqliteBusy struct{ ms atomic.Int64 }

// sqliteBoundMS is lockWaitBound as SQLite's busy_timeout.
var sqliteBoundMS = strconv.FormatInt(lockWaitBound.Milliseconds(), 10)

// usesSQLiteBound reports a statement that runs in sqliteBounded.
func (m *Manager) usesSQLiteBound() bool {
	return m.d.kind == "sqlite" && !m.viaGORM && !m.ownTx && m.bounded()
}

// sqliteBounded runs fn on one connection of the pool, in a transaction
// whose busy_timeout is lockWaitBound; the connection's own is put back
// before the transaction ends. SQLite takes its write lock at the first
// write, as it does for the statement alone.
func (m *Manager) sqliteBounded(ctx context.Context, fn func(p gorm.ConnPool) error) (err error) {
	restore, err := m.sqliteBusyMS(ctx)
	if err != nil {
		return err
	}
	tx, err := beginOn(ctx, m.pool())
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, "PRAGMA busy_timeout = "+sqliteBoundMS); err == nil {
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

// sqliteBusyMS is the connections' busy_timeout, asked once.
func (m *Manager) sqliteBusyMS(ctx context.Context) (string, error) {
	if ms := m.busy.ms.Load(); ms >= 0 {
		return strconv.FormatInt(ms, 10), nil
	}
	var ms int64
	if err := m.pool().QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		return "", fmt.Errorf("lockmgr: read busy_timeout: %w", err)
	}
	m.busy.ms.Store(ms)
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

// rowLocking is lockRows' FOR UPDATE: on MariaDB, where bounded, it waits
// mariadbTxBound at most; PostgreSQL's is bounded by boundOwnTx.
func (m *Manager) rowLocking() clause.Locking {
	if m.bounded() && m.d.srv.mariadb && m.d.kind == "mysql" {
		return clause.Locking{Strength: "UPDATE", Options: "WAIT 1"}
	}
	return clause.Locking{Strength: "UPDATE"}
}

// mariadbTxBound bounds the lock waits of lockmgr's own multi-statement
// transactions on MariaDB (RenewLock, SetLock): they wait for each other's
// row and gap locks, which last a whole transaction, so giving up at once
// would fail them against one another; 1 s is the server's least wait.
const mariadbTxBound = "innodb_lock_wait_timeout=1"

// boundOwnTx starts a transaction of lockmgr's own, tx: on PostgreSQL it
// sets lock_timeout to lockWaitBound until the transaction ends.
func (m *Manager) boundOwnTx(tx *gorm.DB) error {
	if !m.ownTx || m.d.kind != "postgres" {
		return nil
	}
	return tx.Exec("SELECT set_config('lock_timeout', ?, true)", pgLockTimeout).Error
}

// sqliteWriteTx is the body of one of lockmgr's own SQLite transactions,
// tx, for the Manager m bound to it: it takes the database's write lock
// first, so two of them never deadlock upgrading a read lock, waiting for
// it no longer than lockWaitBound where m is bounded (sqliteBounded).
func (m *Manager) sqliteWriteTx(ctx context.Context, tx *gorm.DB, fn func(tx *Manager) error) (err error) {
	if m.ownTx {
		restore, err := m.sqliteBusyMS(ctx)
		if err != nil {
			return err
		}
		if err := tx.Exec("PRAGMA busy_timeout = " + sqliteBoundMS).Error; err != nil {
			return err
		}
		defer func() {
			if rerr := tx.Exec("PRAGMA busy_timeout = " + restore).Error; rerr != nil && err == nil {
				err = fmt.Errorf("lockmgr: restore busy_timeout: %w", rerr)
			}
		}()
	}
	if err := tx.Exec("DELETE FROM " + m.d.table + " WHERE 0").Error; err != nil {
		return err
	}
	return fn(m)
}

// holderPatience is how long a call that does not acquire (a release,
// renewal, SetLock, CleanLocks) keeps asking again after its statement gave
// up a lock wait. Concurrent acquisitions lock a held row too (the upsert
// that finds it live), for the length of their commit; a release must not
// fail for that. Each attempt is still bounded by lockWaitBound, so a row
// another open transaction holds fails the call within about this long.
const holderPatience = 2 * time.Second

// patiently runs fn, and again after a jittered backoff while it fails
// with a lock-wait timeout, until holderPatience has passed or ctx ends.
// fn must be safe to repeat: a statement that gave up changed nothing.
func (m *Manager) patiently(ctx context.Context, fn func() error) error {
	start := time.Now()
	for step := minBackoff; ; step = min(2*step, 100*time.Millisecond) {
		err := fn()
		// Inside a transaction, which a timeout may have aborted
		// (PostgreSQL), the transaction's owner repeats it whole.
		if !m.d.eng.LockWaitTimeout(err) || m.inTx || !m.bounded() || time.Since(start) >= holderPatience ||
			sleep(ctx, jitter(step)) != nil {
			return err
		}
	}
}
