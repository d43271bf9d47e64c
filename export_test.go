package lockmgr

import "context"

// WithoutReturning returns a copy of m that acquires as it must on a
// server without INSERT … RETURNING (MySQL 8), so that path can be tested
// on MariaDB, which accepts the same SQL.
func WithoutReturning(m *Manager) *Manager {
	c := *m
	srv := m.d.srv
	srv.returning = false
	c.d, _ = newDialect(m.d.kind, m.tableName, srv)
	return &c
}

// EngineProblem is engineProblem, for the engine refusal tests.
var EngineProblem = engineProblem

// FenceGaps is what the MySQL/MariaDB fencing of m's table lacks.
func FenceGaps(m *Manager) ([]string, error) {
	return m.mysqlFenceGaps(m.conn(context.Background()))
}
