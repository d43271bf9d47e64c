package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Migrator is an engine's migration and catalog: what lockmgr's
// AutoMigrate and its first-use table check ask of each database. The
// orchestration (when to inspect, what to report, when to migrate) is
// package lockmgr's.
type Migrator interface {
	// Columns reads t's columns from the catalog; none when t does not
	// exist.
	Columns(db *gorm.DB, t Table) (map[string]Column, error)
	// CheckColumns reports, through add, what the engine needs of the
	// columns beyond their presence and widths (MySQL: byte-exact names).
	CheckColumns(cols map[string]Column, add func(fixable bool, format string, args ...any))
	// Side reports whether the side structures the statements use exist
	// and are complete, and names them.
	Side(ctx context.Context, db *gorm.DB, c Conn, t Table) (names []string, present bool, err error)
	// SearchPath reports a table name that each connection resolves
	// through its own search path (PostgreSQL, unqualified); Elsewhere
	// then lists the other schemas where a table of that name exists.
	SearchPath(t Table) bool
	Elsewhere(db *gorm.DB, t Table) []string

	// Serialize runs fn, a migration, so that one process at a time runs
	// it against the table, with each DDL statement's wait for the table's
	// lock bounded by mg.LockWait.
	Serialize(ctx context.Context, mg Migration, fn func(context.Context, *gorm.DB) error) error
	// Migrate creates or completes the table (mg.Cols: as the catalog
	// showed it, nil when missing), then its side structures.
	Migrate(ctx context.Context, db *gorm.DB, mg Migration) error
	// Restore finishes what an interrupted migration left, before the
	// catalog is read (TiDB's rebuild).
	Restore(db *gorm.DB, mg Migration) error

	// IdentLimit is the longest identifier the database keeps (0: no limit
	// lockmgr checks); DerivedNames are the names derived from a bare table
	// name that must fit it.
	IdentLimit() int
	DerivedNames(bare string) []string
}

// Migration is what a migration run gives the engine.
type Migration struct {
	Table
	Cols     map[string]Column // as the catalog showed the table; nil: it does not exist
	Usable   bool              // the catalog showed nothing to fix
	FirstUse bool              // a first use's completion: no table created, none rebuilt
	LockWait time.Duration     // each DDL's bound on waiting for the table's lock
	// Retrying runs fn again while the database rolls it back.
	Retrying func(ctx context.Context, fn func() error) error
	// Exclusive runs fn holding a lock of lockmgr's own of that name (for
	// DDL Galera cannot take from two nodes at once); Conn is the session
	// the engine asks questions on.
	Exclusive func(ctx context.Context, name string, fn func() error) error
	Conn      Conn
	// OnConn runs fn on one connection of the pool, discarded afterwards
	// if fn's error matches ErrDirtyConn.
	OnConn func(ctx context.Context, fn func(context.Context, *gorm.DB) error) error
	// Pause sleeps d, or returns ctx's error; Backoff sleeps a short,
	// jittered while.
	Pause   func(ctx context.Context, d time.Duration) error
	Backoff func(ctx context.Context) error
	// Wait is how long a migration may wait for another process's.
	Wait time.Duration
	// Model is what GORM's migrator creates the table from (PostgreSQL).
	Model any
}

// Missing reports that the table does not exist.
func (mg Migration) Missing() bool { return mg.Cols == nil }

// ErrDirtyConn marks a connection that still holds a lock.
var ErrDirtyConn = errors.New("lockmgr: migration lock not released")

// Column is one column as the catalog describes it.
type Column struct {
	Name      string
	Length    int64  // characters of a varchar, 0 for other types
	Collation string // MySQL/MariaDB
	Key       bool   // part of the primary key
	Type      string // the type's name, lower case
}

// LockColumns are the columns lockmgr reads and writes.
var LockColumns = []string{"name", "locked_by", "lock_process", "locked_until", "token", "fence", "created_at", "updated_at"}

// maxNameLen is how many characters name and locked_by hold
// (lockmgr.MaxNameLen).
const maxNameLen = 255

// readColumns runs q, a catalog query of (schema or NULL, table) that
// returns name, varchar length (0 for other types), collation (” where
// there is none), 1 for a primary-key column, and the type's name.
func readColumns(db *gorm.DB, q string, t Table) (map[string]Column, error) {
	rows, err := db.Raw(q, t.Schema(), t.Bare()).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Column{}
	for rows.Next() {
		var c Column
		var key int64
		if err := rows.Scan(&c.Name, &c.Length, &c.Collation, &key, &c.Type); err != nil {
			return nil, err
		}
		c.Name, c.Key, c.Type = strings.ToLower(c.Name), key > 0, strings.ToLower(c.Type)
		out[c.Name] = c
	}
	if len(out) == 0 {
		return nil, rows.Err()
	}
	return out, rows.Err()
}

// countSide counts, with q (schema or NULL, names), the side structures
// names that exist.
func countSide(db *gorm.DB, q string, t Table, names []string) ([]string, bool, error) {
	var n int64
	err := db.Raw(q, t.Schema(), names).Scan(&n).Error
	return names, n == int64(len(names)), err
}

// execAll runs each of qs on db, stopping at the first error.
func execAll(db *gorm.DB, qs ...string) error {
	for _, q := range qs {
		if err := db.Exec(q).Error; err != nil {
			return err
		}
	}
	return nil
}

// keepConn is db on ctx without its cancellation, to put a connection's
// setting back after a migration step, whatever became of ctx.
func keepConn(ctx context.Context, db *gorm.DB) *gorm.DB {
	return db.Session(&gorm.Session{Context: context.WithoutCancel(ctx)})
}

// addMissing is an ADD COLUMN clause for each column cols lacks, of its
// type in ddl.
func addMissing(cols map[string]Column, ddl func(col string) string) []string {
	var out []string
	for _, c := range LockColumns {
		if _, ok := cols[c]; !ok {
			out = append(out, "ADD COLUMN "+c+" "+ddl(c))
		}
	}
	return out
}

// joinDirty is ferr with the error err of putting a connection back as it
// was: the connection is then discarded (ErrDirtyConn).
func joinDirty(ferr, err error) error { return errors.Join(ferr, ErrDirtyConn, err) }
