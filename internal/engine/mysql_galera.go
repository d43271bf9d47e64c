package engine

import (
	"context"
	"strings"
	"sync/atomic"
)

// MariaDB Galera Cluster. Every node takes writes; a transaction runs on
// its node and is certified against the others' at commit, which fails the
// later of two that wrote the same row (error 1213, "Deadlock found").
// Nodes apply each other's transactions a little later, so a statement on
// one node may not yet see a lock taken on another. lockmgr deals with
// both itself:
//
//   - every lock statement on a Galera node runs as SET STATEMENT
//     wsrep_sync_wait=7 FOR …: the node first applies what the cluster had
//     committed when the statement arrived (reads, UPDATE/DELETE, INSERT);
//   - single statements the cluster rolled back (1213, and 1205 lock wait
//     timeouts) are run again: each is safe to repeat, since a rolled-back
//     attempt changed nothing (Retryable, and lockmgr's retry.go);
//   - fences come from a bucket row that acquisitions write (see
//     fenceTrigger, mysql_migrate.go), which certification orders across
//     nodes;
//   - acquisition does not use INSERT … RETURNING there but, as on MySQL
//     8, the upsert and a read-back by token: MariaDB 10.11 sometimes never
//     ends a RETURNING result whose transaction certification aborted (a
//     trigger wrote another row), and the client waits forever.
//
// Whether a MariaDB server is a Galera node is asked once per Manager, on
// first use; a MySQL 8 or TiDB server is never asked and never sent
// wsrep settings, and a MariaDB server that is not a Galera node runs the
// plain statements.
//
// Lock waits on MariaDB: SET STATEMENT innodb_lock_wait_timeout=0 FOR …,
// combined with wsrep_sync_wait. The server counts whole seconds, so 0
// (give up at once) is its only setting within lockmgr's bound; an
// acquisition that gave up is asked again until the bound has passed. A
// holder's statements (release, renewal, CleanLocks) and lockmgr's own
// transactions wait up to 1 s instead (txBound): one that gives up at once
// never joins the row's queue of waiters, and loses it to every
// transaction that does.

// SyncWaitPrefix makes one statement wait until its node has applied what
// the cluster committed before it: 1 (reads) + 2 (UPDATE, DELETE) + 4
// (INSERT, REPLACE).
const SyncWaitPrefix = "SET STATEMENT wsrep_sync_wait=7 FOR "

// mariadbBound gives up a row-lock wait at once (whole seconds, 0 = none).
const mariadbBound = "innodb_lock_wait_timeout=0"

// mariadbTxBound bounds the lock waits of a holder's statements and of
// lockmgr's own multi-statement transactions on MariaDB (RenewLock,
// SetLock): they wait for each other's row and gap locks, which last a
// whole transaction, so giving up at once would fail them against one
// another; 1 s is the server's least wait.
const mariadbTxBound = "innodb_lock_wait_timeout=1"

// synced are the statements that have Galera forms.
var synced = map[Stmt]bool{
	StAcquire: true, StAcquireExec: true, StRelease: true, StUnlock: true, StIsLocked: true,
	StRenewMax: true, StRenewAdd: true, StClean: true, StReset: true, StList: true, StListAfter: true,
	StReadBack: true, StGet: true, StReleaseHold: true, StSemaphore: true, StSemaphoreFree: true,
	StGuard: true, StGuardMiss: true,
}

// Forms are a MariaDB statement's Galera form and the forms that bound its
// lock waits; MySQL 8 and TiDB send every statement as it is.
func (e MySQL) Forms(sql string, s Stmt, reads bool) Forms {
	if !e.MariaDB || e.TiDB || !synced[s] {
		return Forms{}
	}
	f := Forms{Synced: SyncWaitPrefix + sql}
	if reads {
		return f
	}
	b := mariadbTxBound // a holder's statement queues for the row
	if s == StAcquire || s == StAcquireExec {
		b = mariadbBound
	}
	f.Bounded = "SET STATEMENT " + b + " FOR " + sql
	f.BoundedSynced = strings.TrimSuffix(SyncWaitPrefix, " FOR ") + ", " + b + " FOR " + sql
	f.TxBounded = strings.Replace(f.Bounded, mariadbBound, mariadbTxBound, 1)
	f.TxBoundedSynced = strings.Replace(f.BoundedSynced, mariadbBound, mariadbTxBound, 1)
	return f
}

// Probe states.
const (
	clusterUnknown int32 = iota
	clusterNo
	clusterGalera
)

// probe remembers whether the server is a Galera node; a Manager and its
// WithTx copies share one.
type probe struct{ state atomic.Int32 }

// Synced reports whether the server is a Galera node with replication
// on, asking it the first time. A failed question is asked again next
// time; meanwhile the plain statements run.
func (e MySQL) Synced(ctx context.Context, c Conn) bool {
	if e.galera == nil || !e.MariaDB || e.TiDB {
		return false
	}
	switch e.galera.state.Load() {
	case clusterNo:
		return false
	case clusterGalera:
		return true
	}
	var on *int64
	err := c.Conn(ctx).Raw("SELECT @@wsrep_on").Scan(&on).Error
	switch {
	case err != nil && strings.Contains(err.Error(), "1193"): // unknown variable: built without wsrep
		e.galera.state.Store(clusterNo)
	case err != nil:
		return false
	case on != nil && *on == 1:
		e.galera.state.Store(clusterGalera)
	default:
		e.galera.state.Store(clusterNo)
	}
	return e.galera.state.Load() == clusterGalera
}

// CatchUp makes a Galera node apply what the cluster has committed before
// a transaction reads rows with builder queries (lockRows), which cannot
// carry SET STATEMENT; it is a no-op elsewhere.
func (e MySQL) CatchUp(ctx context.Context, c Conn) error {
	if !e.Synced(ctx, c) {
		return nil
	}
	return c.Conn(ctx).Exec(SyncWaitPrefix + "SELECT 1").Error
}
