package lockmgr

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
)

// WithoutReturning returns a copy of m that acquires as it must on a
// server without INSERT … RETURNING (MySQL 8), so that path can be tested
// on MariaDB, which accepts the same SQL.
func WithoutReturning(m *Manager) *Manager {
	c := *m
	kind := m.db.Dialector.Name()
	srv := engine.Detect(kind, serverVersion(m.db))
	srv.Returning = false
	c.d, _ = newDialect(kind, m.tableName, srv)
	return &c
}

// prepares reports whether lockmgr prepares its statements on a pool of
// dialector, of the database kind.
func prepares(dialector gorm.Dialector, kind string) bool {
	return engine.For(kind, engine.Server{}).Prepares(interpolates(dialector))
}

// EngineProblem is engineProblem, for the engine refusal tests.
var EngineProblem = engineProblem

// FenceGaps is what the MySQL/MariaDB fencing of m's table lacks.
func FenceGaps(m *Manager) ([]string, error) {
	my, ok := m.d.eng.(engine.MySQL)
	if !ok {
		return nil, nil
	}
	ctx := context.Background()
	return my.FenceGaps(ctx, m.conn(ctx), mconn{m}, m.d.t)
}

// WithPreparation returns a copy of m whose statements are prepared (on)
// or not, for A/B measurements.
func WithPreparation(m *Manager, on bool) *Manager {
	c := *m
	s := m.db.Session(&gorm.Session{NewDB: true, Context: context.Background()})
	switch p := m.db.Statement.ConnPool.(type) {
	case *preparedPool:
		if !on {
			s.Statement.ConnPool = p.db
		}
	case *sql.DB:
		if on {
			s.Statement.ConnPool = &preparedPool{db: p, known: m.d.statements(), h: handleOf(p)}
		}
	}
	c.db = s
	return &c
}

// SetBackoff sets Wait's backoff bounds and returns a function that
// restores them; tests call it before any waiter starts.
func SetBackoff(lo, hi time.Duration) (restore func()) {
	oldLo, oldHi := waitMin, waitMax
	waitMin, waitMax = lo, hi
	return func() { waitMin, waitMax = oldLo, oldHi }
}

// WakeLocal wakes a waiter of name on m's table as a release seen by this
// process does.
func WakeLocal(m *Manager, name string) { wakeLocal(m.dbID, m.tableName, name) }

// LocalWaiters is how many waiters of this process queue for name in m's
// table.
func LocalWaiters(m *Manager, name string) int {
	local.mu.Lock()
	defer local.mu.Unlock()
	return len(local.queues[waitKey{m.dbID, m.tableName, name}])
}

// TableName is m's table.
func TableName(m *Manager) string { return m.tableName }

// HolderPatience is holderPatience, for the held-row tests.
const HolderPatience = holderPatience
