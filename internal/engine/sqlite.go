package engine

// SQLite is SQLite, whose driver's errors are its messages.
type SQLite struct{}

// Retryable: nothing. SQLite has no deadlocks to break, and a lock-wait
// timeout ("database is locked") is not repeated: another transaction
// holds the database's write lock (LockWaitTimeout).
func (SQLite) Retryable(err error, _ bool) bool {
	m, _ := byState(err, "40P01", "40001")
	return m
}

// LockWaitTimeout: the busy timeout ran out on the database's or a
// table's lock.
func (SQLite) LockWaitTimeout(err error) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "55P03"); ok {
		return m
	}
	return containsAny(err.Error(), "database is locked", "database table is locked")
}

// LockBusy: the busy timeout ran out.
func (SQLite) LockBusy(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, "55P03"); m {
		return true
	}
	return containsAny(err.Error(), "database is locked", "SQLITE_BUSY")
}

// SchemaShaped: no such table or column, or a table without the unique
// key ON CONFLICT names.
func (SQLite) SchemaShaped(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, pgSchemaStates...); m {
		return true
	}
	return containsAny(err.Error(), "no such table", "no such column", "has no column named", "ON CONFLICT clause does not match")
}
