package lockmgr

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Manager takes and releases named locks in one table of one database.
// It is safe for concurrent use; make one per table and share it.
type Manager struct {
	db        *gorm.DB // the session lock statements run on
	given     *gorm.DB // the *gorm.DB New was given (DB)
	d         *dialect
	tableName string
	owner     string
	logger    *slog.Logger
	hooks     Hooks
	notifier  Notifier
	channel   string
	inTx      bool
	ownTx     bool          // inTx, in a transaction of lockmgr's own: still bounded (lockwait.go)
	busy      *sqliteBusy   // SQLite: the connections' busy_timeout (lockwait.go)
	viaGORM   bool          // WithGORMCallbacks, or a dbresolver plugin that routes statements
	dbID      *dbHandle     // which database handle: keys this process's waiters (wait.go, dbhandle.go)
	schema    *schemaState  // shared with copies: see schema.go
	cluster   *clusterProbe // is the server a Galera node (galera.go)
	mig       migration     // how a migration run waits for table locks (migrate_bounds.go)
	// notifyWarned is when the Manager last logged a failing notifier.
	notifyWarned *notifierWarned
	// release bounds what lockmgr finishes after a caller's context ended
	// (WithReleaseTimeout).
	release time.Duration
	// err, when set, is returned by every call: WithTx was given no
	// transaction.
	err error
}

// New returns a Manager for the lock table of db (DefaultTable unless
// WithTable says otherwise). It runs no SQL: the Manager checks its table
// on its first call, completes one that db.AutoMigrate(&Lock{}) or
// django-lockmgr made (see AutoMigrate), and answers every call with
// ErrSchema while the table does not exist. It returns ErrInvalidOption
// for a bad option or a database other than PostgreSQL, MySQL/MariaDB,
// TiDB or SQLite, and ErrUnsupportedEngine for an engine it cannot serve
// correctly.
func New(db *gorm.DB, opts ...Option) (*Manager, error) {
	if err := checkDB(db); err != nil {
		return nil, err
	}
	s := settings{table: DefaultTable, owner: hostname(), release: DefaultReleaseTimeout}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	kind := db.Dialector.Name()
	if err := engineProblem(serverVersion(db)); err != nil {
		return nil, err
	}
	if err := validateTableFor(kind, s.table); err != nil {
		return nil, err
	}
	d, err := newDialect(kind, s.table, mysqlServer(db, kind))
	if err != nil {
		return nil, err
	}
	m := &Manager{
		db: session(db, d), given: db, d: d, tableName: s.table,
		owner: s.owner, logger: s.logger, hooks: s.hooks, notifier: s.notifier,
		viaGORM: s.viaGORM || usesResolver(db), dbID: databaseID(db),
		schema: newSchemaState(), cluster: &clusterProbe{}, notifyWarned: new(notifierWarned),
		release: s.release, busy: new(sqliteBusy),
	}
	m.busy.ms.Store(-1)
	if m.notifier != nil && kind == "postgres" {
		m.channel = m.notifier.Channel(s.table)
	}
	return m, nil
}

// mysqlServer tells MariaDB 10.5+ (INSERT … RETURNING, NO PAD binary
// collation utf8mb4_nopad_bin) from MySQL 8 and older MariaDB, and TiDB,
// from the version GORM's MySQL dialector records when it connects.
func mysqlServer(db *gorm.DB, kind string) server {
	srv := server{returning: true, nameCollation: "utf8mb4_nopad_bin"}
	version := serverVersion(db)
	if kind != "mysql" || version == "" {
		return srv
	}
	if isTiDB(version) {
		return server{returning: false, nameCollation: "utf8mb4_0900_bin", tidb: true}
	}
	if !strings.Contains(version, "MariaDB") {
		return server{returning: false, nameCollation: "utf8mb4_0900_bin"}
	}
	var major, minor int
	_, _ = fmt.Sscanf(version, "%d.%d", &major, &minor)
	srv.returning = major > 10 || major == 10 && minor >= 5
	srv.mariadb = true
	return srv
}

// Table is the name of the Manager's lock table.
func (m *Manager) Table() string { return m.tableName }

// DB returns the *gorm.DB the Manager was made with (New's db), for tools
// that work on the Manager's table beside it (lockmgrtest). A Manager
// from WithTx returns its parent's, not the transaction.
func (m *Manager) DB() *gorm.DB { return m.given }

// checkDB refuses a *gorm.DB that gorm.Open did not finish: nil, a zero
// gorm.DB{}, or the half-built one gorm.Open returns beside its error.
func checkDB(db *gorm.DB) error {
	switch {
	case db == nil:
		return fmt.Errorf("%w: nil *gorm.DB", ErrInvalidOption)
	case db.Config == nil || db.Dialector == nil || db.Statement == nil:
		return fmt.Errorf("%w: *gorm.DB was not made by gorm.Open", ErrInvalidOption)
	case db.Statement.ConnPool == nil || db.Error != nil:
		return fmt.Errorf("%w: *gorm.DB has no connection (did gorm.Open fail?): %v", ErrInvalidOption, db.Error)
	}
	return nil
}

// WithTx returns a Manager with the same settings whose calls run inside
// the caller's transaction tx (db.Begin(), or the tx a db.Transaction
// callback gets): what they write commits or rolls back with it.
// Multi-statement calls (RenewLock, SetLock) use a savepoint in it. Do
// and Acquire are refused on it (a scope's keep-alive and releases cannot
// share the caller's connection). If tx is nil or not in a transaction,
// every call of the returned Manager returns ErrInvalidOption.
func (m *Manager) WithTx(tx *gorm.DB) *Manager {
	c := *m
	c.inTx, c.ownTx = true, false
	if err := checkDB(tx); err != nil {
		c.err = fmt.Errorf("WithTx: %w", err)
		return &c
	}
	c.db = txSession(tx)
	if !inTransaction(c.pool()) {
		c.err = fmt.Errorf("%w: WithTx was given a *gorm.DB that is not in a transaction (use db.Begin(), or the tx of db.Transaction)", ErrInvalidOption)
	}
	return &c
}

// inCallerTx reports a Manager whose statements run in a transaction of
// the caller's: WithTx, or New given a *gorm.DB inside one.
func (m *Manager) inCallerTx() bool { return m.inTx || inTransaction(m.pool()) }

func (m *Manager) conn(ctx context.Context) *gorm.DB {
	return m.db.WithContext(ctx)
}

// inTransaction reports a pool that is a transaction: New was given a
// *gorm.DB inside one (db.Begin(), or a Transaction callback's tx).
func inTransaction(p gorm.ConnPool) bool {
	_, ok := p.(gorm.TxCommitter)
	return ok
}

// usesResolver reports gorm.io/plugin/dbresolver on db: it moves a
// statement to its source or replica in GORM's callbacks, so lockmgr's
// statements must go through them to reach the database it chose.
func usesResolver(db *gorm.DB) bool {
	_, ok := db.Config.Plugins["gorm:db_resolver"]
	return ok
}

// databaseID is the state this process shares between the Managers on
// the database handle db runs on (dbhandle.go): its *sql.DB's, else (a
// connection pool that is not one, which GORM cannot tell apart) a
// Manager's own.
func databaseID(db *gorm.DB) *dbHandle {
	if sqlDB, err := db.DB(); err == nil {
		return handleOf(sqlDB)
	}
	return newHandle()
}

func (m *Manager) lockedBy(c *lockConfig) string {
	if c.lockedBy != nil {
		return *c.lockedBy
	}
	return m.owner
}

func process(c *lockConfig) int64 {
	if c.process != nil {
		return *c.process
	}
	return processID
}

// prepare validates a call's name and options before any SQL runs.
func prepare(ctx context.Context, call string, allowed optionSet, name string, opts []LockOption) (lockConfig, error) {
	if err := checkContext(ctx); err != nil {
		return lockConfig{}, err
	}
	if err := ValidateName(name); err != nil {
		return lockConfig{}, err
	}
	return newLockConfig(call, allowed, opts)
}

// checkContext refuses a nil context, before anything would use it.
func checkContext(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%w: nil context.Context (use context.Background())", ErrInvalidOption)
	}
	return nil
}

func validateLock(l *Lock) error {
	if l == nil {
		return fmt.Errorf("%w: nil *Lock", ErrInvalidOption)
	}
	return ValidateName(l.Name)
}

// IsLocked reports whether a live lock holds name, in one statement.
// Expired rows count as absent.
func (m *Manager) IsLocked(ctx context.Context, name string) (bool, error) {
	if err := ValidateName(name); err != nil {
		return false, err
	}
	var v values
	m.d.fill(&v, 0)
	v[aName] = name
	var n int64
	if _, err := m.query(ctx, m.d.isLocked, &v, &n); err != nil {
		return false, fmt.Errorf("lockmgr: is locked %q: %w", name, err)
	}
	return n > 0, nil
}
