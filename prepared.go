package lockmgr

import (
	"context"
	"database/sql"
	"sync"

	"gorm.io/gorm"
)

// lockmgr's statements are prepared once per *sql.DB and reused: on MySQL
// an unprepared statement with arguments costs three round trips, and on
// SQLite re-parsing shows in a ~50 µs lock cycle. GORM's own PrepareStmt
// session would do it too, but starts a goroutine that never stops; this
// cache starts none. Only the dialect's statements are prepared; DDL and
// everything else pass through.

type stmtKey struct {
	db    *sql.DB
	query string
}

var stmtCache sync.Map // stmtKey → *sql.Stmt

// preparedPool is a gorm.ConnPool over a *sql.DB that runs known
// statements prepared.
type preparedPool struct {
	db    *sql.DB
	known map[string]bool
}

func (p *preparedPool) stmt(ctx context.Context, query string) *sql.Stmt {
	if !p.known[query] {
		return nil
	}
	key := stmtKey{p.db, query}
	if s, ok := stmtCache.Load(key); ok {
		return s.(*sql.Stmt)
	}
	s, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // run it unprepared; the error, if real, shows there
	}
	if prev, loaded := stmtCache.LoadOrStore(key, s); loaded {
		_ = s.Close()
		return prev.(*sql.Stmt)
	}
	return s
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

// session returns the *gorm.DB lock statements run on: db itself, with
// lockmgr's statements prepared when db talks to a plain *sql.DB (not a
// transaction, and not a pool GORM or a plugin already manages).
func session(db *gorm.DB, d *dialect) *gorm.DB {
	// Setting a Context makes GORM copy the Statement, so replacing the
	// copy's ConnPool leaves the caller's *gorm.DB as it was.
	s := db.Session(&gorm.Session{NewDB: true, Context: context.Background()})
	// Every lock statement goes to the primary: gorm.io/plugin/dbresolver
	// would send a raw SELECT (IsLocked, List) to a possibly stale replica.
	// This is its "write" setting, which WithContext's clone carries along.
	s.Statement.Settings.Store("gorm:db_resolver:write", struct{}{})
	if sqlDB, ok := db.Statement.ConnPool.(*sql.DB); ok {
		s.Statement.ConnPool = &preparedPool{db: sqlDB, known: d.statements()}
	}
	return s
}

// statements is the set of SQL texts worth preparing.
func (d *dialect) statements() map[string]bool {
	known := map[string]bool{}
	for _, s := range []stmt{d.acquire, d.acquireExec, d.release, d.releaseNotify, d.unlock, d.unlockNotify,
		d.isLocked, d.renewMax, d.renewAdd, d.clean, d.list, d.readUntil, d.casUntil, d.readBack, d.get} {
		if s.sql != "" {
			known[s.sql] = true
		}
		if s.synced != "" {
			known[s.synced] = true
		}
	}
	return known
}
