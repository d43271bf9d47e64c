package engine

import "strings"

// MySQL is MySQL, MariaDB (Galera nodes included) and, with TiDB set,
// TiDB: the servers behind GORM's "mysql" dialector, whose errors read
// "Error <number> …".
type MySQL struct {
	TiDB bool // a TiDB server, with write conflicts of its own
	// Returning: the server takes INSERT … RETURNING (MariaDB 10.5+);
	// elsewhere an acquisition reads its row back by token (ReadBack).
	Returning bool
}

// Retryable: 1213 (deadlock found; on Galera also a certification
// conflict) outside a caller's transaction, which the server aborted
// whole. TiDB adds 9007 (write conflict, optimistic mode), 8022 (retry the
// transaction) and a pessimistic lock that kept meeting new writes. A
// lock-wait timeout (1205) is not repeated: another transaction holds the
// row (LockWaitTimeout).
func (e MySQL) Retryable(err error, inTx bool) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "40P01", "40001"); ok {
		return m
	}
	msg := err.Error()
	return !inTx && (strings.Contains(msg, "Error 1213") ||
		e.TiDB && (strings.Contains(msg, "Error 9007") || strings.Contains(msg, "Error 8022") ||
			strings.Contains(msg, "pessimistic lock retry limit reached")))
}

// LockWaitTimeout: 1205 (lock wait timeout: MySQL, MariaDB, TiDB); 3572
// (NOWAIT: MySQL 8, TiDB).
func (MySQL) LockWaitTimeout(err error) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "55P03"); ok {
		return m
	}
	msg := err.Error()
	return strings.Contains(msg, "Error 1205") || strings.Contains(msg, "Error 3572")
}

// LockBusy: 1205 (lock_wait_timeout, which bounds waits for a table's
// metadata lock).
func (MySQL) LockBusy(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, "55P03"); m {
		return true
	}
	return strings.Contains(err.Error(), "Error 1205")
}

// SchemaShaped: unknown column, no such table, data too long; on TiDB,
// schema changed (8113 wraps a 1146) and information schema changed
// during the statement.
func (MySQL) SchemaShaped(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, pgSchemaStates...); m {
		return true
	}
	return containsAny(err.Error(), "Error 1054 ", "Error 1146 ", "Error 1406 ", "Error 8113 ", "Error 8028 ")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
