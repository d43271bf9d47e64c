package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
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

// withLockWait runs fn on db (one connection, or a transaction) with the
// database's own bound on waits for table locks set to m.mig.lockWait,
// restoring the connection's setting afterwards: PostgreSQL's lock_timeout
// (SET LOCAL, for the migration's transaction), MySQL/MariaDB's
// lock_wait_timeout for metadata locks (whole seconds), SQLite's
// busy_timeout.
func (m *Manager) withLockWait(ctx context.Context, db *gorm.DB, fn func() error) error {
	d := m.mig.lockWait
	if d <= 0 || m.inTx {
		return fn()
	}
	keep := db.Session(&gorm.Session{Context: context.WithoutCancel(ctx)})
	switch m.d.kind {
	case "postgres":
		if err := db.Exec(fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", d.Milliseconds())).Error; err != nil {
			return err
		}
		return fn()
	case "mysql":
		secs := max(1, int((d+time.Second-1)/time.Second))
		if err := db.Exec(fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)).Error; err != nil {
			return err
		}
		ferr := fn()
		if err := keep.Exec("SET SESSION lock_wait_timeout = DEFAULT").Error; err != nil {
			return errors.Join(ferr, errDirtyConn, err)
		}
		return ferr
	}
	var old int64
	if err := db.Raw("PRAGMA busy_timeout").Scan(&old).Error; err != nil {
		return err
	}
	if err := db.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", d.Milliseconds())).Error; err != nil {
		return err
	}
	ferr := fn()
	if err := keep.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", old)).Error; err != nil {
		return errors.Join(ferr, errDirtyConn, err)
	}
	return ferr
}

// Identifier limits: MySQL/MariaDB/TiDB names are at most 64 characters,
// PostgreSQL's 63 bytes (longer ones it truncates without a word).
var identLimit = map[string]int{"mysql": 64, "postgres": 63}

// derivedNames are the names lockmgr (and GORM's AutoMigrate of the
// model) derive from the bare table name t: the fence side table, the
// locked_until index, and on MySQL the rebuild's siblings (TiDB). MySQL's
// trigger names are shortened with a hash (sideName) and need no limit.
func derivedNames(kind, t string) []string {
	out := []string{t, t + "_fence", "idx_" + t + "_locked_until"}
	if kind == "mysql" {
		out = append(out, t+"_lmnew", t+"_lmold")
	}
	return out
}

// validateTableFor rejects, before any SQL, a table name from which a
// derived name would not fit the database's identifier limit.
func validateTableFor(kind, table string) error {
	limit, ok := identLimit[kind]
	if !ok {
		return nil
	}
	parts := strings.Split(table, ".")
	if s := parts[0]; len(parts) == 2 && len(s) > limit {
		return fmt.Errorf("%w: schema %q is %d characters; %s names hold at most %d", ErrInvalidOption, s, len(s), kind, limit)
	}
	bare := parts[len(parts)-1]
	worst := bare
	for _, n := range derivedNames(kind, bare) {
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
