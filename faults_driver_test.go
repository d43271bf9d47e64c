package lockmgr_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// The driver-level cut: lockmgr's default path sends its statements on
// the pool directly (prepared statements on the *sql.DB, its own
// transactions), past GORM's callbacks, so installFaults cannot see them.
// faultDB opens a second handle on the same database through a
// database/sql driver that wraps the real one and runs the faultPlan of
// each statement's context: "before" cuts the context before the
// statement reaches the real driver; "after" lets the statement run to
// its end on the server (a query's rows are read to the last and closed,
// so an autocommit statement has committed) and cuts the context before
// database/sql hands the reply to lockmgr.

// faultDB is a Manager with lockmgr's defaults (no GORM callbacks) on a
// gorm.DB on e's database whose statements faultPlans cut, and that DB.
func faultDB(t *testing.T, e *env) (*lockmgr.Manager, *gorm.DB) {
	t.Helper()
	real, err := e.db.DB()
	require.NoError(t, err)
	var dsn string
	var dial func(*sql.DB) gorm.Dialector
	backend := strings.Split(t.Name(), "/")[1] // eachDB's subtest: TiDB speaks "mysql"
	switch backend {
	case "sqlite":
		var seq int
		var name, file string
		require.NoError(t, real.QueryRow("PRAGMA database_list").Scan(&seq, &name, &file))
		dsn = sqliteDSN(file)
		dial = func(db *sql.DB) gorm.Dialector { return sqlite.Dialector{Conn: db} }
	case "postgres":
		dsn = os.Getenv(envPostgres)
		dial = func(db *sql.DB) gorm.Dialector { return postgres.New(postgres.Config{Conn: db}) }
	case "mysql", "tidb":
		dsn = os.Getenv(map[string]string{"mysql": envMySQL, "tidb": envTiDB}[backend])
		dial = func(db *sql.DB) gorm.Dialector { return mysql.New(mysql.Config{Conn: db}) }
	default:
		t.Skipf("no driver-level cut for %s", backend)
	}
	var c driver.Connector = dsnConnector{real.Driver(), dsn}
	if dc, ok := real.Driver().(driver.DriverContext); ok {
		c, err = dc.OpenConnector(dsn)
		require.NoError(t, err)
	}
	db := sql.OpenDB(faultConnector{c})
	t.Cleanup(func() { _ = db.Close() })
	gdb, err := gorm.Open(dial(db), quiet())
	require.NoError(t, err)
	m, err := lockmgr.New(gdb, lockmgr.WithTable(e.table))
	require.NoError(t, err)
	_, err = m.IsLocked(e.ctx, "warm-up") // first-use checks run before any cut
	require.NoError(t, err)
	return m, gdb
}

// dsnConnector is a Connector for a driver without one of its own.
type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

type faultConnector struct{ driver.Connector }

func (c faultConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return faultConn{conn}, nil
}

// planOf is ctx's faultPlan, if it has one that cuts.
func planOf(ctx context.Context) *faultPlan {
	p, _ := ctx.Value(faultKey{}).(*faultPlan)
	return p
}

// faultBefore counts a statement sent under ctx and cuts it if its plan
// says so, before the statement reaches the driver.
func faultBefore(ctx context.Context) {
	if p := planOf(ctx); p != nil {
		if n := p.seen.Add(1); p.at != 0 && p.before && n == p.at {
			p.cut()
		}
	}
}

// faultAfter cuts ctx after its statement ran, if its plan says so.
func faultAfter(ctx context.Context) {
	if p := planOf(ctx); p != nil && p.at != 0 && !p.before && p.seen.Load() == p.at {
		p.cut()
	}
}

// skipped reports a statement the driver declined to run directly
// (driver.ErrSkip: the MySQL driver prepares a statement with arguments),
// and uncounts it: database/sql sends it again, prepared, and that is the
// statement the plan sees. A before-cut already made is the same cut.
func skipped(ctx context.Context, err error) bool {
	if !errors.Is(err, driver.ErrSkip) {
		return false
	}
	if p := planOf(ctx); p != nil {
		p.seen.Add(-1)
	}
	return true
}

// faultConn is a driver connection whose statements faultPlans cut. It
// needs the real connection's context methods (every driver the suite
// runs on has them).
type faultConn struct{ driver.Conn }

func (c faultConn) inner() interface {
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
} {
	return c.Conn.(interface {
		driver.ConnPrepareContext
		driver.ConnBeginTx
		driver.ExecerContext
		driver.QueryerContext
	})
}

func (c faultConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	s, err := c.inner().PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return faultStmt{s}, nil
}

func (c faultConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	faultBefore(ctx)
	tx, err := c.inner().BeginTx(ctx, o)
	faultAfter(ctx)
	if err != nil {
		return nil, err
	}
	return faultTx{tx, ctx}, nil
}

// faultTx counts its commit as a statement of the transaction's context.
type faultTx struct {
	driver.Tx
	ctx context.Context
}

func (tx faultTx) Commit() error {
	faultBefore(tx.ctx)
	err := tx.Tx.Commit()
	faultAfter(tx.ctx)
	return err
}

func (c faultConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	faultBefore(ctx)
	r, err := c.inner().ExecContext(ctx, q, args)
	if skipped(ctx, err) {
		return nil, err
	}
	faultAfter(ctx)
	return r, err
}

func (c faultConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	faultBefore(ctx)
	rows, err := c.inner().QueryContext(ctx, q, args)
	if skipped(ctx, err) {
		return nil, err
	}
	return readAll(ctx, rows, err)
}

func (c faultConn) CheckNamedValue(v *driver.NamedValue) error {
	if nc, ok := c.Conn.(driver.NamedValueChecker); ok {
		return nc.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (c faultConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c faultConn) IsValid() bool {
	v, ok := c.Conn.(driver.Validator)
	return !ok || v.IsValid()
}

type faultStmt struct{ driver.Stmt }

func (s faultStmt) inner() interface {
	driver.StmtExecContext
	driver.StmtQueryContext
} {
	return s.Stmt.(interface {
		driver.StmtExecContext
		driver.StmtQueryContext
	})
}

func (s faultStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	faultBefore(ctx)
	r, err := s.inner().ExecContext(ctx, args)
	faultAfter(ctx)
	return r, err
}

func (s faultStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	faultBefore(ctx)
	rows, err := s.inner().QueryContext(ctx, args)
	return readAll(ctx, rows, err)
}

func (s faultStmt) CheckNamedValue(v *driver.NamedValue) error {
	if nc, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return nc.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

// readAll reads a query's rows to the end, so the statement has run
// whole on the server, then runs the after-cut of ctx.
func readAll(ctx context.Context, rows driver.Rows, err error) (driver.Rows, error) {
	if err != nil {
		faultAfter(ctx)
		return nil, err
	}
	out := &bufRows{cols: rows.Columns()}
	for {
		row := make([]driver.Value, len(out.cols))
		if err = rows.Next(row); err != nil {
			break
		}
		for i, v := range row {
			if b, ok := v.([]byte); ok {
				row[i] = append([]byte(nil), b...) // the driver reuses its buffer
			}
		}
		out.rows = append(out.rows, row)
	}
	cerr := rows.Close()
	faultAfter(ctx)
	if err != io.EOF {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	return out, nil
}

// bufRows are rows read whole.
type bufRows struct {
	cols []string
	rows [][]driver.Value
}

func (r *bufRows) Columns() []string { return r.cols }
func (r *bufRows) Close() error      { return nil }
func (r *bufRows) Next(dest []driver.Value) error {
	if len(r.rows) == 0 {
		return io.EOF
	}
	copy(dest, r.rows[0])
	r.rows = r.rows[1:]
	return nil
}
