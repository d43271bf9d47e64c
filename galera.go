package lockmgr

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
//     attempt changed nothing (retrying, retry.go);
//   - fences come from a bucket row that acquisitions write (see
//     fenceTriggerDDL), which certification orders across nodes;
//   - acquisition does not use INSERT … RETURNING there but, as on MySQL
//     8, the upsert and a read-back by token: MariaDB 10.11 sometimes never
//     ends a RETURNING result whose transaction certification aborted (a
//     trigger wrote another row), and the client waits forever.
//
// Whether a MariaDB server is a Galera node is asked once per Manager, on
// first use; a MySQL 8 or TiDB server is never asked and never sent
// wsrep settings, and a MariaDB server that is not a Galera node runs the
// plain statements.

// syncWaitPrefix makes one statement wait until its node has applied what
// the cluster committed before it: 1 (reads) + 2 (UPDATE, DELETE) + 4
// (INSERT, REPLACE).
const syncWaitPrefix = "SET STATEMENT wsrep_sync_wait=7 FOR "

// addSynced sets the Galera form of every statement of a MariaDB dialect.
func (d *dialect) addSynced() {
	if d.kind != "mysql" || !d.srv.mariadb {
		return
	}
	for _, s := range []*stmt{&d.acquire, &d.acquireExec, &d.release, &d.releaseHold, &d.unlock, &d.isLocked, &d.renewMax, &d.renewAdd,
		&d.clean, &d.reset, &d.list, &d.listAfter, &d.readBack, &d.get, &d.semaphore, &d.semaphoreFree} {
		if s.sql == "" {
			continue
		}
		s.synced = syncWaitPrefix + s.sql
		if !s.reads { // lockwait.go
			b := mariadbTxBound // a holder's statement queues for the row
			if s == &d.acquire || s == &d.acquireExec {
				b = mariadbBound
			}
			s.bounded = "SET STATEMENT " + b + " FOR " + s.sql
			s.boundedSynced = strings.TrimSuffix(syncWaitPrefix, " FOR ") + ", " + b + " FOR " + s.sql
		}
	}
}

// Cluster probe states.
const (
	clusterUnknown int32 = iota
	clusterNo
	clusterGalera
)

// clusterProbe remembers whether the server is a Galera node; a Manager
// and its WithTx copies share one.
type clusterProbe struct{ state atomic.Int32 }

// onGalera reports whether m's server is a Galera node with replication
// on, asking it the first time. A failed question is asked again next
// time; meanwhile the plain statements run.
func (m *Manager) onGalera(ctx context.Context) bool {
	if m.cluster == nil || !m.d.srv.mariadb {
		return false
	}
	switch m.cluster.state.Load() {
	case clusterNo:
		return false
	case clusterGalera:
		return true
	}
	var on *int64
	err := m.conn(ctx).Raw("SELECT @@wsrep_on").Scan(&on).Error
	switch {
	case err != nil && strings.Contains(err.Error(), "1193"): // unknown variable: built without wsrep
		m.cluster.state.Store(clusterNo)
	case err != nil:
		return false
	case on != nil && *on == 1:
		m.cluster.state.Store(clusterGalera)
	default:
		m.cluster.state.Store(clusterNo)
	}
	return m.cluster.state.Load() == clusterGalera
}

// catchUp makes a Galera node apply what the cluster has committed before
// a transaction reads rows with builder queries (lockRows), which cannot
// carry SET STATEMENT; it is a no-op elsewhere.
func (m *Manager) catchUp(ctx context.Context) error {
	if !m.onGalera(ctx) {
		return nil
	}
	return m.conn(ctx).Exec(syncWaitPrefix + "SELECT 1").Error
}
