package engine

import (
	"errors"
	"slices"
)

// Engine is one database's lock statements and its reading of the errors
// its driver returns.
type Engine interface {
	// Statements are the engine's lock statements for the table t.
	Statements(t Table) Statements
	// Retryable reports a transaction the database aborted to break a
	// deadlock or a serialization conflict, which a fresh attempt can get
	// past; a lock wait that timed out is not one (LockWaitTimeout). Inside
	// a caller's transaction (inTx) on MySQL it is not retryable: MySQL
	// rolls back the whole transaction, not just lockmgr's savepoint.
	Retryable(err error, inTx bool) bool
	// LockWaitTimeout reports a statement that gave up waiting for a row
	// lock that another transaction holds: by lockmgr's bound, by the
	// session's own timeout, or by NOWAIT.
	LockWaitTimeout(err error) bool
	// LockBusy reports a statement that gave up waiting for a table lock
	// (a migration's bounded DDL).
	LockBusy(err error) bool
	// SchemaShaped reports an error that says a table or column the
	// statement names does not exist, or that a value does not fit its
	// column: the table is not (or no longer) what lockmgr's migration
	// leaves.
	SchemaShaped(err error) bool
}

// Server is what an engine needs to know of the server behind "mysql".
type Server struct {
	TiDB      bool // a TiDB server
	Returning bool // it takes INSERT … RETURNING (MariaDB 10.5+)
}

// For returns the Engine of a GORM dialector name ("postgres", "mysql" or
// "sqlite"; srv says which server is behind "mysql"), or nil for another.
func For(kind string, srv Server) Engine {
	switch kind {
	case "postgres":
		return Postgres{}
	case "mysql":
		return MySQL(srv) // the same fields: a Server is what MySQL knows
	case "sqlite":
		return SQLite{}
	}
	return nil
}

// byState reads an error that carries an SQLSTATE (pgx's): match reports
// one of states, ok that it carries one. Every engine reads an SQLSTATE so
// first, as lockmgr always has; only PostgreSQL's driver returns one.
func byState(err error, states ...string) (match, ok bool) {
	var state interface{ SQLState() string }
	if !errors.As(err, &state) {
		return false, false
	}
	return slices.Contains(states, state.SQLState()), true
}
