package lockmgr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// A name whose row another open transaction holds (it inserted or updated
// the row and has not committed, or on SQLite it holds the write lock) is
// held: a call outside that transaction answers at once, and a Wait stays
// within its bound, however long the transaction stays open.

// heldRowBound is how long a lock call may take while another transaction
// holds the row: the bound lockmgr sets (≤ 100 ms) plus a margin for a
// loaded machine.
const heldRowBound = time.Second

// openHolder takes name in a transaction it leaves open until the test
// commits it; the returned lock is the holder's.
func openHolder(t *testing.T, e *env, name string) (*gorm.DB, *lockmgr.Lock) {
	t.Helper()
	tx := e.db.Begin()
	require.NoError(t, tx.Error)
	t.Cleanup(func() { tx.Rollback() })
	l, err := e.m.WithTx(tx).GetLock(e.ctx, name)
	require.NoError(t, err)
	return tx, l
}

// tidbHolderWaits: on TiDB an autocommit statement (a release, a
// renewal) behind another open transaction's row ignores every lock-wait
// setting and waits for that transaction, or for its caller's deadline;
// acquisitions are bounded (docs/distributed-sql.md).
func tidbHolderWaits(t *testing.T) bool { return strings.HasSuffix(t.Name(), "/tidb") }

func TestHeldByOpenTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		tx, held := openHolder(t, e, "row")
		// A caller's deadline far above the bound: the answer must come from
		// the bound, not from the context.
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
		defer cancel()

		start := time.Now()
		_, err := e.m.GetLock(ctx, "row")
		took := time.Since(start)
		t.Logf("%s: GetLock of a name an open transaction holds: %v (%v)", e.kind, took, err)
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.NoError(t, ctx.Err(), "answered by the context's deadline, not by the bound")
		require.Less(t, took, heldRowBound)

		const wait = 100 * time.Millisecond
		start = time.Now()
		_, err = e.m.GetLock(ctx, "row", lockmgr.Wait(wait))
		took = time.Since(start)
		t.Logf("%s: Wait(%v) on it: %v, overshoot %v", e.kind, wait, took, took-wait)
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.Less(t, took, wait+heldRowBound)

		require.NoError(t, tx.Commit().Error)
		require.NoError(t, e.m.Release(e.ctx, held))
		l, err := e.m.GetLock(e.ctx, "row")
		require.NoError(t, err, "free once the transaction committed and the lock was released")
		require.NoError(t, e.m.Release(e.ctx, l))
	})
}

// renewedInOpenTx takes name, then renews it in a transaction it leaves
// open until the test commits it (or rolls it back at cleanup): the row
// exists, and another transaction holds it.
func renewedInOpenTx(t *testing.T, e *env, name string) (*gorm.DB, *lockmgr.Lock) {
	t.Helper()
	l := e.lock(name)
	tx := e.db.Begin()
	require.NoError(t, tx.Error)
	t.Cleanup(func() { tx.Rollback() })
	_, err := e.m.WithTx(tx).Renew(e.ctx, l)
	require.NoError(t, err)
	return tx, l
}

// TestUpdatedByOpenTransaction: the row exists and another transaction
// updated it (renewed it) without committing; a release, renewal or
// acquisition outside it gives up within the bound.
func TestUpdatedByOpenTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		tx, l := renewedInOpenTx(t, e, "upd")
		var ctx context.Context
		for _, call := range []struct {
			name string
			run  func() error
		}{
			{"GetLock", func() error { _, err := e.m.GetLock(ctx, "upd"); return err }},
			{"Renew", func() error { _, err := e.m.Renew(ctx, l); return err }},
			{"Release", func() error { return e.m.Release(ctx, l) }},
		} {
			if call.name != "GetLock" && tidbHolderWaits(t) {
				continue
			}
			c, cancel := context.WithTimeout(e.ctx, 5*time.Second)
			defer cancel()
			ctx = c
			start := time.Now()
			err := call.run()
			took := time.Since(start)
			t.Logf("%s: %s of a row an open transaction updated: %v (%v)", e.kind, call.name, took, err)
			require.Error(t, err, call.name)
			require.NoError(t, ctx.Err(), "%s answered by the context's deadline", call.name)
			bound := heldRowBound
			if call.name != "GetLock" { // a holder's call asks again for up to holderPatience
				bound += lockmgr.HolderPatience
			}
			require.Less(t, took, bound, call.name)
			if call.name == "GetLock" {
				require.ErrorIs(t, err, lockmgr.ErrLocked)
			}
		}
		require.NoError(t, tx.Commit().Error)
		require.NoError(t, e.m.Release(e.ctx, l))
	})
}

// lockWaitSetting is how each database names the bound on a lock wait.
var lockWaitSetting = map[string]struct{ show, set, restore string }{
	"postgres": {"SHOW lock_timeout", "SET LOCAL lock_timeout = '7s'", ""},
	"mysql": {"SELECT @@SESSION.innodb_lock_wait_timeout", "SET SESSION innodb_lock_wait_timeout = 7",
		"SET SESSION innodb_lock_wait_timeout = DEFAULT"},
	"sqlite": {"PRAGMA busy_timeout", "PRAGMA busy_timeout = 7000", "PRAGMA busy_timeout = 10000"},
}

func showSetting(t *testing.T, db *gorm.DB, q string) string {
	t.Helper()
	var v string
	require.NoError(t, db.Raw(q).Row().Scan(&v))
	return v
}

// TestCallerLockWaitUnchanged: lockmgr's calls leave the lock-wait bound of
// the caller's transaction, and of the pool's sessions, as they were.
func TestCallerLockWaitUnchanged(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := lockWaitSetting[e.kind]
		before := showSetting(t, e.db, s.show)
		for range 3 {
			l := e.lock("pool")
			_, err := e.m.Renew(e.ctx, l)
			require.NoError(t, err)
			e.isLocked("pool")
			require.NoError(t, e.m.Release(e.ctx, l))
			_, err = e.m.CleanLocks(e.ctx)
			require.NoError(t, err)
			require.Equal(t, before, showSetting(t, e.db, s.show), "the pool's setting changed")
		}

		err := e.db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Exec(s.set).Error)
			if s.restore != "" {
				defer tx.Exec(s.restore)
			}
			want := showSetting(t, tx, s.show)
			in := e.m.WithTx(tx)
			l, err := in.GetLock(e.ctx, "caller")
			require.NoError(t, err)
			_, err = in.Renew(e.ctx, l)
			require.NoError(t, err)
			_, err = in.IsLocked(e.ctx, "caller")
			require.NoError(t, err)
			_, err = in.List(e.ctx)
			require.NoError(t, err)
			require.NoError(t, in.Release(e.ctx, l))
			require.Equal(t, want, showSetting(t, tx, s.show), "the caller's transaction's setting changed")
			return nil
		})
		require.NoError(t, err)
		require.False(t, errors.Is(err, lockmgr.ErrLocked))
	})
}

// TestShortDeadlineBehindOpenTransaction: every call on a name whose row
// another open transaction holds answers by its caller's deadline (plus a
// statement's cancellation), whether it asks again or runs a transaction
// of lockmgr's own (SetLock, RenewLock: on MariaDB these waited their 1 s
// row-lock bound past a 100 ms deadline).
func TestShortDeadlineBehindOpenTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		tx, l := renewedInOpenTx(t, e, "upd")
		const deadline, margin = 100 * time.Millisecond, 500 * time.Millisecond
		for _, call := range []struct {
			name string
			run  func(ctx context.Context) error
		}{
			{"GetLock Wait", func(ctx context.Context) error {
				_, err := e.m.GetLock(ctx, "upd", lockmgr.Wait(time.Minute))
				return err
			}},
			{"Renew", func(ctx context.Context) error { _, err := e.m.Renew(ctx, l); return err }},
			{"Release", func(ctx context.Context) error { return e.m.Release(ctx, l) }},
			{"Unlock", func(ctx context.Context) error { return e.m.Unlock(ctx, "upd") }},
			{"RenewLock", func(ctx context.Context) error { _, err := e.m.RenewLock(ctx, "upd"); return err }},
			{"SetLock", func(ctx context.Context) error {
				_, err := e.m.SetLock(ctx, []string{"upd", "upd:other"})
				return err
			}},
		} {
			ctx, cancel := context.WithTimeout(e.ctx, deadline)
			start := time.Now()
			err := call.run(ctx)
			took := time.Since(start)
			cancel()
			t.Logf("%s: %s behind an open transaction, deadline %v: %v (%v)", e.kind, call.name, deadline, took, err)
			require.Error(t, err, call.name)
			require.Less(t, took, deadline+margin, "%s answered past its caller's deadline", call.name)
		}
		require.NoError(t, tx.Commit().Error)
		require.False(t, e.isLocked("upd:other"), "a SetLock its caller gave up on took nothing")
		// The cut-off Unlock may still have run on the server once the
		// row was free (MySQL does not stop a statement its client left).
		if err := e.m.Release(e.ctx, l); err != nil {
			require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		}
	})
}
