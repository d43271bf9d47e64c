package lockmgr

import (
	"context"
	"database/sql"
	"reflect"

	"gorm.io/gorm"
)

// lockmgr prepares its own statements only where that pays and where the
// user's settings did not choose otherwise:
//
//   - MySQL/MariaDB: go-sql-driver sends a statement with arguments as
//     prepare, execute and close (three round trips) unless the DSN says
//     interpolateParams=true. Prepared once per *sql.DB, it costs one. A
//     DSN with interpolateParams=true (the usual setting behind ProxySQL or
//     Vitess) already costs one round trip: nothing is prepared.
//   - SQLite: re-parsing shows in a ~50 µs lock cycle; prepared.
//   - PostgreSQL: nothing is prepared. pgx caches its own statements as its
//     exec mode says, GORM rewrites ? to $n before the pool sees a query (so
//     a cache keyed by lockmgr's SQL missed every statement with arguments),
//     and a statement prepared by name breaks behind a transaction pooler.
//
// GORM's PrepareStmt (gorm.Config or Session) prepares every statement by
// name; lockmgr's statements run on the pool under it instead, so that they
// follow the rules above. GORM's PrepareStmt session would also start a
// goroutine that never stops; this cache starts none. Only the dialect's
// statements are prepared; DDL and everything else pass through.

// preparedPool is a gorm.ConnPool over a *sql.DB that runs known
// statements prepared, from the statements of its handle (dbhandle.go).
type preparedPool struct {
	db    *sql.DB
	known map[string]bool
	h     *dbHandle // keeps the handle's statements while the pool is in use
}

func (p *preparedPool) stmt(ctx context.Context, query string) *sql.Stmt {
	if !p.known[query] {
		return nil
	}
	return p.h.stmts.get(ctx, p.db, query)
}

func (p *preparedPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return p.db.PrepareContext(ctx, query)
}

func (p *preparedPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := p.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return p.db.ExecContext(ctx, query, args...)
}

func (p *preparedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := p.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

func (p *preparedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := p.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

// BeginTx makes GORM's transactions on this pool use the prepared
// statements too.
func (p *preparedPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &preparedTx{Tx: tx, p: p}, nil
}

// GetDBConn lets gorm.DB.DB() find the *sql.DB.
func (p *preparedPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

// preparedTx is a transaction of a preparedPool.
type preparedTx struct {
	*sql.Tx
	p *preparedPool
}

func (t *preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := t.p.stmt(ctx, query); s != nil {
		return t.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := t.p.stmt(ctx, query); s != nil {
		return t.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := t.p.stmt(ctx, query); s != nil {
		return t.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// session returns the *gorm.DB lock statements run on: db itself, on the
// pool under GORM's PrepareStmt if db has one, with lockmgr's statements
// prepared where prepares says so.
func session(db *gorm.DB, d *dialect) *gorm.DB {
	// Setting a Context makes GORM copy the Statement, so replacing the
	// copy's ConnPool leaves the caller's *gorm.DB as it was.
	s := db.Session(&gorm.Session{NewDB: true, Context: context.Background()})
	// Every lock statement goes to the primary: gorm.io/plugin/dbresolver
	// would send a raw SELECT (IsLocked, List) to a possibly stale replica.
	// This is its "write" setting, which WithContext's clone carries along.
	s.Statement.Settings.Store("gorm:db_resolver:write", struct{}{})
	if inner, ok := unprepared(db.Statement.ConnPool); ok {
		s.Statement.ConnPool = inner
	}
	if sqlDB, ok := s.Statement.ConnPool.(*sql.DB); ok && prepares(db.Dialector, d.kind) {
		s.Statement.ConnPool = &preparedPool{db: sqlDB, known: d.statements(), h: handleOf(sqlDB)}
	}
	return s
}

// unprepared returns the pool or transaction under GORM's PrepareStmt
// wrappers; ok is false when p is not one.
func unprepared(p gorm.ConnPool) (inner gorm.ConnPool, ok bool) {
	switch w := p.(type) {
	case *gorm.PreparedStmtDB:
		return w.ConnPool, w.ConnPool != nil
	case *gorm.PreparedStmtTX:
		return w.Tx, w.Tx != nil
	}
	return nil, false
}

// prepares reports whether lockmgr prepares its statements on db: on
// SQLite, and on MySQL unless the DSN asks for client-side interpolation
// (read from gorm.io/driver/mysql's parsed DSN, without importing it).
func prepares(dialector gorm.Dialector, kind string) bool {
	switch kind {
	case "sqlite":
		return true
	case "mysql":
		return !interpolates(dialector)
	default:
		return false
	}
}

// interpolates reports whether a MySQL dialector's DSNConfig (a
// *mysql.Config of go-sql-driver) has InterpolateParams set.
func interpolates(dialector gorm.Dialector) bool {
	v := reflect.Indirect(reflect.ValueOf(dialector))
	if v.Kind() != reflect.Struct {
		return false
	}
	cfg := v.FieldByName("Config") // gorm.io/driver/mysql embeds *Config
	if cfg.Kind() == reflect.Pointer {
		if cfg.IsNil() {
			return false
		}
		cfg = cfg.Elem()
	}
	if cfg.Kind() != reflect.Struct {
		cfg = v
	}
	dsn := cfg.FieldByName("DSNConfig")
	if dsn.Kind() != reflect.Pointer || dsn.IsNil() || dsn.Elem().Kind() != reflect.Struct {
		return false
	}
	f := dsn.Elem().FieldByName("InterpolateParams")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

// statements is the set of SQL texts worth preparing.
func (d *dialect) statements() map[string]bool {
	known := map[string]bool{}
	for _, s := range []stmt{d.acquire, d.acquireExec, d.release, d.releaseNotify, d.unlock, d.unlockNotify,
		d.isLocked, d.renewMax, d.renewAdd, d.clean, d.list, d.listAfter, d.readUntil, d.casUntil, d.readBack, d.get, d.fenceBump,
		d.semaphore, d.semaphoreFree} {
		if s.sql != "" {
			known[s.sql] = true
		}
		for _, t := range []string{s.synced, s.bounded, s.boundedSynced} {
			if t != "" {
				known[t] = true
			}
		}
	}
	return known
}

// txSession is the session a Manager bound to the caller's transaction tx
// (WithTx) runs on: tx, or the transaction under GORM's PrepareStmt.
func txSession(tx *gorm.DB) *gorm.DB {
	inner, ok := unprepared(tx.Statement.ConnPool)
	if !ok {
		return tx.Session(&gorm.Session{NewDB: true})
	}
	ctx := tx.Statement.Context
	if ctx == nil {
		ctx = context.Background()
	}
	// A Context makes GORM copy the Statement: tx keeps its own ConnPool.
	s := tx.Session(&gorm.Session{NewDB: true, Context: ctx})
	s.Statement.ConnPool = inner
	return s
}
