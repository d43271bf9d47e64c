package lockmgr

import (
	"context"
	"time"
)

// Another transaction can hold a lock row for as long as it stays open: a
// caller's WithTx transaction that took or renewed a name and has not
// committed, or on SQLite any open write transaction, which holds the
// database's write lock. A lock statement run outside the caller's
// transaction does not wait for it beyond lockWaitBound: the server itself
// ends the wait, so the statement ends cleanly, having changed nothing
// (cancelling it from Go would leave its outcome unknown). Such a statement
// found the name held: an acquisition answers ErrLocked (with Wait, the
// wait goes on), and nothing repeats it (retrying). Each engine bounds
// waits its own way (internal/engine):
//
//   - PostgreSQL: set_config('lock_timeout', lockWaitBound, true), evaluated
//     in the statement before it takes any lock; it lasts until the end of
//     the statement's own transaction (@bounded). SQLSTATE 55P03.
//   - MariaDB: SET STATEMENT innodb_lock_wait_timeout=0 FOR …, combined
//     with Galera's wsrep_sync_wait (mysql_galera.go). The server counts
//     whole seconds, so 0 (give up at once) is its only setting within the
//     bound; an acquisition that gave up is asked again until lockWaitBound
//     has passed since the attempt began (Manager.attempt). Error 1205. A
//     holder's statements (release, renewal, CleanLocks) and lockmgr's own
//     transactions wait up to 1 s instead: one that gives up at once never
//     joins the row's queue of waiters, and loses it to every transaction
//     that does.
//   - TiDB: the same SET STATEMENT is not available, its lock waits count
//     whole seconds, and an autocommit statement ignores them. Its
//     acquisition, a transaction (mysql_tidb.go), first locks the name's
//     row with FOR UPDATE NOWAIT (error 3572), asked again as MariaDB's is;
//     its fence bucket waits 1 s at most. A holder's autocommit statements
//     wait for the holding transaction or for their caller's deadline.
//   - MySQL 8: its SET_VAR hint does not take InnoDB variables, and
//     innodb_lock_wait_timeout counts whole seconds from 1, so a statement
//     waits the session's innodb_lock_wait_timeout (50 s by default) once,
//     never more: 1205 is answered as ErrLocked and not repeated.
//     Set innodb_lock_wait_timeout=1 for lockmgr's connections there.
//   - SQLite: busy_timeout, a connection setting, is lowered to the bound
//     around the statement, in a transaction on one connection, and put
//     back before it commits (SQLite.Bounded). "database is locked".
//
// Inside the caller's transaction nothing is bounded: a lock timeout would
// abort the caller's whole transaction on PostgreSQL, and its waits are
// the caller's to choose; the caller's own settings stay as they were.
// Reads (IsLocked, Get, List) take no row locks and never wait.
const lockWaitBound = 50 * time.Millisecond

// bounded reports whether m's statements give up waiting for another
// transaction's lock after lockWaitBound: outside the caller's transaction,
// and inside lockmgr's own.
func (m *Manager) bounded() bool {
	return m.ownTx || !m.inTx && !inTransaction(m.pool())
}

// boundsOnPool reports a write that runs on what the engine's Bounded
// gives (SQLite: a transaction with a lowered busy_timeout): one on the
// pool itself, outside any transaction.
func (m *Manager) boundsOnPool() bool {
	return !m.viaGORM && !m.ownTx && m.bounded()
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
