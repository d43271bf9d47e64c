package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Engine is one database: its lock statements, the steps lockmgr takes
// with them, its migration and catalog, and its reading of the errors its
// driver returns. Package lockmgr holds one per Manager and asks it
// whatever differs between databases.
type Engine interface {
	// Statements are the engine's lock statements for the table t.
	Statements(t Table) Statements
	// Forms are the other texts the statement s (compiled from
	// Statements) is sent as: on a Galera node, or bounding its lock waits.
	Forms(sql string, s Stmt, reads bool) Forms

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
	// TooLong reports a value too long for its column (locked_by on a
	// table whose column is Django's width).
	TooLong(err error) bool
	// TimeoutKeepsTx reports a database whose statement that gave up a
	// lock wait is undone alone, leaving its transaction usable (MySQL):
	// an acquisition inside the caller's transaction may ask again.
	TimeoutKeepsTx() bool

	// Quote quotes an identifier; QuoteIndex an index or trigger name.
	Quote(ident string) string
	QuoteIndex(name string) string
	// Placeholder is the driver's own placeholder of a statement's i-th
	// value (from 1).
	Placeholder(i int) string
	// Prepares reports whether lockmgr prepares its statements on the
	// pool; interpolates says the driver interpolates values itself.
	Prepares(interpolates bool) bool

	// Times are the values of an acquisition or renewal of expires,
	// judged by the database's clock or by clock's.
	Times(clock func() time.Time, expires time.Duration) Times
	// Acquire runs an acquisition: found reports a row with the token,
	// which is the caller's if it won.
	Acquire(ctx context.Context, r Runner, t Times) (a Acquired, found bool, err error)
	// Renew runs an owner-checked renewal (addTime: added to the expiry)
	// and returns the new expiry as the database gave it, nil for none;
	// found is false when the token no longer holds the name.
	Renew(ctx context.Context, r Runner, addTime bool, expires time.Duration) (until any, found bool, err error)
	// Release runs the release s (StRelease … StUnlockWatched) and returns
	// how many rows it deleted.
	Release(ctx context.Context, r Runner, s Stmt) (int64, error)

	// Bounded is what a statement that writes outside any transaction
	// runs on, given the pool p, for its lock waits to be bounded by bound
	// where the statement's text does not bound them (SQLite's
	// busy_timeout): p itself, or a transaction that done, given the
	// statement's error, ends (nil: nothing to end).
	Bounded(ctx context.Context, p gorm.ConnPool, bound time.Duration) (on gorm.ConnPool, done func(error) error, err error)
	// InTx runs fn as the body of one of lockmgr's own transactions, tx
	// on the table t; own says its lock waits are bounded.
	InTx(ctx context.Context, tx *gorm.DB, t Table, own bool, fn func() error) error
	// RowLocking is the FOR UPDATE of a transaction that reads rows to
	// change them (bounded: its waits are bounded).
	RowLocking(bounded bool) clause.Locking
	// Synced reports statements sent in their synced form (Galera).
	Synced(ctx context.Context, c Conn) bool
	// CatchUp makes the server apply what its cluster has committed
	// before a transaction reads rows with builder queries.
	CatchUp(ctx context.Context, c Conn) error
	// Version asks the server what it is, on first use, where the driver
	// recorded no version (PostgreSQL's wire, which other engines speak
	// too); "" where there is nothing to ask.
	Version(ctx context.Context, db *gorm.DB) (string, error)

	Migrator
}

// Server is what an engine needs to know of the server behind "mysql".
type Server struct {
	TiDB      bool // a TiDB server
	Returning bool // it takes INSERT … RETURNING (MariaDB 10.5+)
	// MariaDB: the server may be a Galera node (wsrep_sync_wait, SET
	// STATEMENT … FOR); whether it is, is asked on first use.
	MariaDB bool
	// NameCollation makes name and token compare byte for byte.
	NameCollation string
}

// Detect tells, for "mysql", MariaDB 10.5+ (INSERT … RETURNING, NO PAD
// binary collation utf8mb4_nopad_bin) from MySQL 8 and older MariaDB, and
// TiDB (which answers as "8.0.11-TiDB-v…"), from the version GORM's MySQL
// dialector records when it connects; an unknown version is taken for
// MariaDB 10.5+ without Galera.
func Detect(kind, version string) Server {
	srv := Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}
	if kind != "mysql" || version == "" {
		return srv
	}
	if strings.Contains(version, "-TiDB-") {
		return Server{NameCollation: "utf8mb4_0900_bin", TiDB: true}
	}
	if !strings.Contains(version, "MariaDB") {
		return Server{NameCollation: "utf8mb4_0900_bin"}
	}
	var major, minor int
	_, _ = fmt.Sscanf(version, "%d.%d", &major, &minor)
	srv.Returning = major > 10 || major == 10 && minor >= 5
	srv.MariaDB = true
	return srv
}

// For returns the Engine of a GORM dialector name ("postgres", "mysql" or
// "sqlite"; srv says which server is behind "mysql"), or nil for another.
// Each call returns a new engine: it keeps what it learns of its server
// (a Galera node, SQLite's busy_timeout) for one Manager and its copies.
func For(kind string, srv Server) Engine {
	switch kind {
	case "postgres":
		return Postgres{}
	case "mysql":
		return newMySQL(srv)
	case "sqlite":
		return newSQLite()
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

// noForms is Forms for an engine that sends each statement as it is.
func noForms() Forms { return Forms{} }

// tooLong reads 22001 (string_data_right_truncation) or MySQL's 1406.
func tooLong(err error) bool {
	if m, _ := byState(err, "22001"); m {
		return true
	}
	return err != nil && strings.Contains(err.Error(), "Error 1406 ")
}

// containsAny reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
