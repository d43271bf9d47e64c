package engine

// Postgres is PostgreSQL, whose errors carry an SQLSTATE.
type Postgres struct{}

// Retryable: 40P01 (deadlock detected), 40001 (serialization failure).
func (Postgres) Retryable(err error, _ bool) bool {
	m, _ := byState(err, "40P01", "40001")
	return m
}

// LockWaitTimeout: 55P03 (lock_not_available: lock_timeout, NOWAIT).
func (Postgres) LockWaitTimeout(err error) bool {
	m, _ := byState(err, "55P03")
	return m
}

// LockBusy: 55P03 (lock_not_available).
func (Postgres) LockBusy(err error) bool {
	m, _ := byState(err, "55P03")
	return m
}

// SchemaShaped: undefined column, undefined table, no unique key for ON
// CONFLICT, value too long.
func (Postgres) SchemaShaped(err error) bool {
	m, _ := byState(err, pgSchemaStates...)
	return m
}

// pgSchemaStates are the SQLSTATEs SchemaShaped reports on every engine.
var pgSchemaStates = []string{"42703", "42P01", "42P10", "22001"}
