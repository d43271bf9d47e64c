package lockmgr

import (
	"context"
	"database/sql"
	"errors"

	"gorm.io/gorm"
)

// run runs op, one statement or one transaction of lockmgr's own, once
// the table is ready (guard, schema.go), repeating a run the database
// rolled back (retrying, retry.go).
func (m *Manager) run(ctx context.Context, op func() error) error {
	return m.guard(ctx, func() error { return m.retrying(ctx, op) })
}

// query runs s and scans its first row into dest; found is false when it
// returned no row.
func (m *Manager) query(ctx context.Context, s stmt, v *values, dest ...any) (found bool, err error) {
	err = m.run(ctx, func() error {
		found, err = m.queryOnce(ctx, s, v, dest...)
		return err
	})
	return found, err
}

// queryOnce is one run of query. An error can come after the row (on
// Galera, certification fails at the end of an INSERT … RETURNING), so
// rows.Close's error is returned too.
func (m *Manager) queryOnce(ctx context.Context, s stmt, v *values, dest ...any) (found bool, err error) {
	if !s.reads && m.boundsOnPool() {
		p, done, err := m.d.eng.Bounded(ctx, m.pool(), lockWaitBound)
		if err != nil {
			return false, err
		}
		rows, err := p.QueryContext(ctx, m.text(ctx, s), m.bind(s, v)...)
		found, err = scanFirst(rows, err, dest...)
		return found, end(done, err)
	}
	rows, err := m.rows(ctx, s, v)
	return scanFirst(rows, err, dest...)
}

// end ends what the engine's Bounded began for a statement whose error is
// err, if it began anything.
func end(done func(error) error, err error) error {
	if done == nil {
		return err
	}
	return done(err)
}

// scanFirst scans the first of rows into dest and closes rows.
func scanFirst(rows *sql.Rows, err error, dest ...any) (found bool, _ error) {
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Close()
}

// exec runs s and returns how many rows it changed.
func (m *Manager) exec(ctx context.Context, s stmt, v *values) (n int64, err error) {
	err = m.run(ctx, func() error {
		res, err := m.result(ctx, s, v)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n, err
}

// pool is the connection pool, or the transaction, that the Manager's
// *gorm.DB runs its statements on (with lockmgr's prepared statements
// where session() put them). Lock statements go to it directly: GORM's
// Raw would re-scan their text for placeholders, and clone a Statement
// and run its callbacks, on every call, which costs more CPU than a
// SQLite lock cycle's own work. So GORM's logger and plugins do not see
// them, unless WithGORMCallbacks asks for GORM's path, which a registered
// dbresolver plugin also takes (its callbacks pick the database, and mark
// lockmgr's statements for its primary); WithLogger and WithHooks do.
func (m *Manager) pool() gorm.ConnPool { return m.db.Statement.ConnPool }

// rows starts s on the pool, or through GORM (WithGORMCallbacks).
func (m *Manager) rows(ctx context.Context, s stmt, v *values) (*sql.Rows, error) {
	if m.viaGORM {
		return m.gorm(ctx).Raw(m.gormText(ctx, s), m.bind(s, v)...).Rows()
	}
	return m.pool().QueryContext(ctx, m.text(ctx, s), m.bind(s, v)...)
}

// bind is s's arguments from v, with @bounded as m.bounded says.
func (m *Manager) bind(s stmt, v *values) []any {
	v[aBounded] = m.bounded()
	return s.bind(v)
}

// result runs s on the pool, or through GORM (WithGORMCallbacks).
func (m *Manager) result(ctx context.Context, s stmt, v *values) (res sql.Result, err error) {
	if !s.reads && m.boundsOnPool() {
		p, done, err := m.d.eng.Bounded(ctx, m.pool(), lockWaitBound)
		if err != nil {
			return nil, err
		}
		res, err = p.ExecContext(ctx, m.text(ctx, s), m.bind(s, v)...)
		return res, end(done, err)
	}
	if m.viaGORM {
		res := gorm.WithResult()
		if err := m.gorm(ctx).Clauses(res).Exec(m.gormText(ctx, s), m.bind(s, v)...).Error; err != nil {
			return nil, err
		}
		if res.Result == nil { // DryRun, or a plugin that ran nothing
			return nil, errors.New("lockmgr: GORM ran no statement (DryRun?)")
		}
		return res.Result, nil
	}
	return m.pool().ExecContext(ctx, m.text(ctx, s), m.bind(s, v)...)
}

// writeSetting is gorm.io/plugin/dbresolver's "use the primary" setting.
const writeSetting = "gorm:db_resolver:write"

// gorm is the Manager's session for one statement through GORM, marked
// for the primary, as session() explains (a write goes there anyway).
func (m *Manager) gorm(ctx context.Context) *gorm.DB {
	tx := m.conn(ctx)
	tx.Statement.Settings.Store(writeSetting, struct{}{})
	return tx
}

// text is the SQL to send for s: its Galera form on a Galera node, and
// its form that bounds lock waits where m.bounded() (lockwait.go).
func (m *Manager) text(ctx context.Context, s stmt) string {
	return m.pick(ctx, s, s.native)
}

// gormText is text for GORM's Raw and Exec, which take ? placeholders.
func (m *Manager) gormText(ctx context.Context, s stmt) string {
	return m.pick(ctx, s, s.sql)
}

func (m *Manager) pick(ctx context.Context, s stmt, plain string) string {
	synced := s.forms.Synced != "" && m.d.eng.Synced(ctx, mconn{m})
	return s.forms.Text(plain, synced, m.bounded(), m.ownTx)
}
