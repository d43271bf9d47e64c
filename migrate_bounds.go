package lockmgr

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gormlock/lockmgr/internal/engine"
)

// How schema changes are bounded: each migration run's DDL waits only so
// long for the table's lock, a first use's far less than AutoMigrate's,
// and the names lockmgr derives from the table's must fit the database.

// MigrateLockTimeout bounds how long each DDL statement of AutoMigrate
// (the plugin, `lockmgr migrate`) waits for other transactions on the lock
// table to let go of it. While it waits, the database queues every lock
// call on the table behind it.
const MigrateLockTimeout = 10 * time.Second

// firstUseLockWait is MigrateLockTimeout for a Manager's first use
// completing a table: short, since live lock traffic queues behind it.
const firstUseLockWait = 500 * time.Millisecond

// migration is how a migration run behaves: how long each DDL statement
// may wait for the table's lock, and whether it is a first use's, which
// creates no table and does not rebuild one (TiDB).
type migration struct {
	lockWait time.Duration
	firstUse bool
}

// withMigration is a copy of m whose migration runs behave as mig.
func (m *Manager) withMigration(mig migration) *Manager {
	c := *m
	c.mig = mig
	return &c
}

// firstUse is m for the completion of a table on its first use.
func (m *Manager) firstUse() *Manager {
	return m.withMigration(migration{lockWait: firstUseLockWait, firstUse: true})
}

// busyError is a migration step that gave up waiting for the table.
func (m *Manager) busyError(err error) error {
	return fmt.Errorf("%w: table %q is busy: a schema change waited %v for other transactions on it "+
		"(an open transaction that read or wrote it) and gave up, so as not to stall lock calls; "+
		"run m.AutoMigrate(ctx) or `lockmgr migrate` when it is quiet: %w", ErrSchema, m.tableName, m.mig.lockWait, err)
}

// fitsLockedBy checks, before the lock statement, that by fits the
// table's locked_by column where it is narrower than LockedBy's limit
// (Django's varchar(100)): a value that does not fit is ErrInvalidOption,
// not a run-time ALTER TABLE.
func (m *Manager) fitsLockedBy(ctx context.Context, by string) error {
	if err := m.ready(ctx); err != nil {
		return err
	}
	if w := m.schema.byWidth.Load(); w > 0 && int64(utf8.RuneCountInString(by)) > w {
		return fmt.Errorf("%w: LockedBy %q is %d characters; column locked_by of table %q holds %d: "+
			"shorten it (WithOwner, LockedBy), or widen the column with m.AutoMigrate(ctx) or `lockmgr migrate`",
			ErrInvalidOption, by, utf8.RuneCountInString(by), m.tableName, w)
	}
	return nil
}

// validateTableFor rejects, before any SQL, a table name from which a
// name the engine derives (engine.Migrator's DerivedNames: the fence side
// table, the locked_until index, TiDB's rebuild siblings) would not fit
// the database's identifier limit.
func validateTableFor(eng engine.Engine, kind, table string) error {
	limit := eng.IdentLimit()
	if limit == 0 {
		return nil
	}
	parts := strings.Split(table, ".")
	if s := parts[0]; len(parts) == 2 && len(s) > limit {
		return fmt.Errorf("%w: schema %q is %d characters; %s names hold at most %d", ErrInvalidOption, s, len(s), kind, limit)
	}
	bare := parts[len(parts)-1]
	worst := bare
	for _, n := range eng.DerivedNames(bare) {
		if len(n) > len(worst) {
			worst = n
		}
	}
	if len(worst) <= limit {
		return nil
	}
	return fmt.Errorf("%w: table %q: lockmgr derives %q (%d characters) from it, and %s names hold at most %d; "+
		"use a table name of at most %d characters", ErrInvalidOption, table, worst, len(worst), kind, limit, limit-(len(worst)-len(bare)))
}
