package lockmgr

import (
	"context"
	"database/sql"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// runner runs the statements of an engine's steps (engine.Runner) for one
// call of m, binding its values v, as m runs every statement: once the
// table is ready, repeated while the database rolls it back.
type runner struct {
	m *Manager
	v *values
}

var _ engine.Runner = (*runner)(nil)

func (r *runner) Conn(ctx context.Context) *gorm.DB { return r.m.conn(ctx) }

func (r *runner) Query(ctx context.Context, s engine.Stmt, dest ...any) (bool, error) {
	return r.m.query(ctx, *r.m.d.byKey[s], r.v, dest...)
}

func (r *runner) Exec(ctx context.Context, s engine.Stmt) (int64, error) {
	return r.m.exec(ctx, *r.m.d.byKey[s], r.v)
}

func (r *runner) Result(ctx context.Context, s engine.Stmt) (res sql.Result, err error) {
	err = r.m.run(ctx, func() (err error) {
		res, err = r.m.result(ctx, *r.m.d.byKey[s], r.v)
		return err
	})
	return res, err
}

func (r *runner) Set(a engine.Arg, x any) { r.v[a] = x }

func (r *runner) Bounded() bool { return r.m.bounded() }

// Tx runs fn in a transaction of its own, or a savepoint inside the
// caller's; the table check runs outside it, and a transaction the
// database rolled back is retried whole (run). Its statements are bounded
// where the caller's would be.
func (r *runner) Tx(ctx context.Context, fn func(tx engine.Runner) error) error {
	return r.m.run(ctx, func() error {
		return r.m.conn(ctx).Transaction(func(tx *gorm.DB) error {
			t := r.m.WithTx(tx)
			t.ownTx = r.m.bounded()
			return fn(&runner{m: t, v: r.v})
		})
	})
}

// mconn is m's session for an engine's questions of its server
// (engine.Conn).
type mconn struct{ m *Manager }

func (c mconn) Conn(ctx context.Context) *gorm.DB { return c.m.conn(ctx) }
