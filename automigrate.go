package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// AutoMigrate creates the lock table, or completes an existing one: one
// that db.AutoMigrate(&Lock{}) or django-lockmgr created, or that Django's
// migrations rebuilt. It adds token and fence with database defaults (rows
// Django writes stay readable), widens name to 255 bytes, makes it compare
// byte for byte on MySQL/MariaDB, and creates the side table and triggers
// fences need on SQLite and MySQL. Every step checks before it changes
// anything, and the whole runs serialized in the database (an advisory lock
// on PostgreSQL, GET_LOCK on MySQL, an immediate transaction on SQLite), so
// any number of processes may run it at once, on every start. Each DDL
// statement waits at most MigrateLockTimeout for the table's own lock
// (PostgreSQL lock_timeout, MySQL/MariaDB lock_wait_timeout): one that
// waited that long behind another transaction gives up, with an error
// matching ErrSchema that says so, rather than keep every lock call queued
// behind it. It returns an error matching ErrSchema when the table cannot
// be made usable.
func (m *Manager) AutoMigrate(ctx context.Context) error {
	if err := m.checkEngine(ctx); err != nil {
		return err
	}
	if m.mig.lockWait == 0 {
		m = m.withMigration(migration{lockWait: MigrateLockTimeout})
	}
	err := m.serialized(ctx, m.migrate)
	if err != nil && !m.inTx && !m.mig.firstUse && !m.d.eng.LockBusy(err) && sleep(ctx, jitter(10*minBackoff)) == nil {
		// Where the database lock does not reach every writer (Galera's
		// GET_LOCK is per node), a step may lose a race to the same step
		// elsewhere ("duplicate column"); a second run sees its result.
		err = m.serialized(ctx, m.migrate)
	}
	if m.d.eng.LockBusy(err) {
		err = m.busyError(err)
	}
	r, ierr := m.inspect(ctx, m.conn(ctx))
	switch {
	case ierr == nil && !r.usable():
		return m.schemaError(r, err)
	case err == nil:
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("lockmgr: migrate %s: %w", m.tableName, err)
	}
	m.checked(r)
	return nil
}

// migrate brings the table, then its side structures, up to date, as the
// engine migrates (engine.Migrator); the lock statements of
// internal/engine depend on them.
func (m *Manager) migrate(ctx context.Context, db *gorm.DB) error {
	mg := m.migration(ctx)
	if err := m.d.eng.Restore(db, mg); err != nil {
		return err
	}
	r, err := m.inspect(ctx, db)
	if err != nil {
		return err
	}
	if r.missing && m.mig.firstUse { // another connection saw it: never make a second one
		return m.schemaError(r, errors.New("a first use creates no table; on PostgreSQL, check that every pooled connection has one search_path"))
	}
	mg.Cols, mg.Usable = r.cols, r.usable()
	return m.d.eng.Migrate(ctx, db, mg)
}

// migration is what the engine's migration of m's table is given.
func (m *Manager) migration(ctx context.Context) engine.Migration {
	mg := engine.Migration{
		Table: m.d.t, FirstUse: m.mig.firstUse, LockWait: m.mig.lockWait,
		Retrying: m.retrying, Conn: mconn{m}, OnConn: m.onConn, Wait: waitFor(ctx), Model: &Lock{},
		Pause:   sleep,
		Backoff: func(ctx context.Context) error { return sleep(ctx, jitter(minBackoff)) },
	}
	if m.inTx {
		mg.LockWait = 0 // the caller's transaction keeps its own settings
	} else {
		mg.Exclusive = m.exclusive
	}
	return mg
}

// exclusive runs fn holding the lock name of m's table. The table exists
// by now; the lock must not wait for the table check, which waits for the
// migration.
func (m *Manager) exclusive(ctx context.Context, name string, fn func() error) error {
	lm := m.unchecked()
	l, err := lm.GetLock(ctx, name, Expires(2*time.Minute), Wait(2*time.Minute))
	if err != nil {
		return err
	}
	defer func() { _ = lm.Release(context.WithoutCancel(ctx), l) }()
	return fn()
}
