package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"gorm.io/gorm"
)

// The lock table may have been made by lockmgr's migration, by GORM's
// db.AutoMigrate(&Lock{}), by django-lockmgr, or changed since (Django's
// migration 0002 rebuilds it on SQLite). A Manager therefore checks its
// table on first use, in the catalog: a missing table is an ErrSchema for
// every call; one that lacks a column, side table or trigger, or whose name
// is not byte-exact, is completed by lockmgr's own migration (AutoMigrate),
// serialized in the database.
// Afterwards an atomic flag keeps every call at one statement. A statement
// that later fails because a column or table is missing makes the Manager
// run the migration again (whatever the catalog shows) and retry the
// statement once, or return ErrSchema saying what is wrong.

// schemaState is shared by a Manager and its copies (WithTx, transactions).
type schemaState struct {
	ok   atomic.Bool   // checked and completed outside any transaction
	txOK atomic.Bool   // checked, without changes, inside a caller's transaction
	sem  chan struct{} // one check at a time
}

func newSchemaState() *schemaState {
	return &schemaState{sem: make(chan struct{}, 1)}
}

// unchecked returns a copy of m whose calls skip the table check: for the
// migration's own use of the lock table, which must not wait for the
// check that waits for the migration.
func (m *Manager) unchecked() *Manager {
	c := *m
	c.schema = newSchemaState()
	c.schema.ok.Store(true)
	return &c
}

// stale makes the next call check the table again.
func (s *schemaState) stale() {
	s.ok.Store(false)
	s.txOK.Store(false)
}

// CheckTable checks the lock table now, as a Manager's first call does,
// and completes it the same way (see AutoMigrate); inside WithTx it only
// reads the catalog. It returns nil when every call can work, an error
// matching ErrSchema that says what is wrong and how to fix it, or the
// database's own error. Use it to fail fast at start or as a readiness
// probe.
func (m *Manager) CheckTable(ctx context.Context) error {
	m.schema.stale()
	return m.ready(ctx)
}

// ready checks the table once per Manager, completing it if it can. Inside
// a caller's transaction it only reads the catalog: it runs no DDL there.
func (m *Manager) ready(ctx context.Context) error {
	if m.schema.ok.Load() || m.inTx && m.schema.txOK.Load() {
		return nil
	}
	select {
	case m.schema.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, context.Cause(ctx))
	}
	defer func() { <-m.schema.sem }()
	if m.schema.ok.Load() || m.inTx && m.schema.txOK.Load() {
		return nil
	}
	if err := m.checkEngine(ctx); err != nil {
		return err
	}
	if m.inTx {
		return m.checkInTx(ctx)
	}
	return m.complete(ctx, false)
}

// repair is ready after a statement failed for want of a column or table:
// it runs the migration even if the catalog shows nothing missing, so that
// whatever the migration creates and the check does not look at is made.
func (m *Manager) repair(ctx context.Context) error {
	select {
	case m.schema.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, context.Cause(ctx))
	}
	defer func() { <-m.schema.sem }()
	return m.complete(ctx, true)
}

// complete checks that the table exists and, if it lacks something (or
// force), runs the migration, which adds what is missing. A complete
// table costs two catalog queries and no lock.
func (m *Manager) complete(ctx context.Context, force bool) error {
	r, err := m.inspect(ctx, m.conn(ctx))
	switch {
	case err != nil:
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, err)
	case r.missing:
		return m.schemaError(r, nil)
	case r.usable() && !force:
		m.schema.ok.Store(true)
		return nil
	}
	return m.AutoMigrate(ctx)
}

// checkInTx checks the table from inside a caller's transaction.
func (m *Manager) checkInTx(ctx context.Context) error {
	r, err := m.inspect(ctx, m.conn(ctx))
	if err != nil {
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, err)
	}
	if r.missing {
		return m.schemaError(r, nil)
	}
	if !r.usable() {
		return m.schemaError(r, errors.New("lockmgr does not change the table inside a transaction: run AutoMigrate (or `lockmgr migrate`) first"))
	}
	m.schema.txOK.Store(true)
	return nil
}

// guard runs op, one statement or one transaction, once the table is
// ready. If op fails because a column or table is missing, the table is
// checked (and completed) again and op retried once; inside a caller's
// transaction, which such a failure may have aborted, the error is
// returned as ErrSchema and the next call outside it checks again.
func (m *Manager) guard(ctx context.Context, op func() error) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if m.err != nil {
		return m.err
	}
	if err := m.ready(ctx); err != nil {
		return err
	}
	err := op()
	if err == nil || !m.d.schemaShaped(err) {
		return err
	}
	m.schema.stale()
	switch {
	case m.inTx && errors.Is(err, ErrSchema):
		return err
	case m.inTx:
		return fmt.Errorf("%w: table %q changed under lockmgr; run AutoMigrate (or `lockmgr migrate`): %w", ErrSchema, m.tableName, err)
	}
	if err := m.repair(ctx); err != nil {
		return err
	}
	return op()
}

// report is what inspect found wrong with the table.
type report struct {
	cols     map[string]column
	missing  bool     // no such table
	problems []string // what else is wrong, for the error message
	fixable  bool     // the migration can repair every problem
}

func (r *report) usable() bool { return !r.missing && len(r.problems) == 0 }

func (r *report) add(fixable bool, format string, args ...any) {
	if len(r.problems) == 0 {
		r.fixable = true
	}
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.fixable = r.fixable && fixable
}

// schemaError describes r, and why the migration did not fix it.
func (m *Manager) schemaError(r report, cause error) error {
	var msg string
	switch {
	case r.missing:
		msg = fmt.Sprintf("table %q does not exist; create it with `lockmgr migrate` "+
			"(or Manager.AutoMigrate, db.Use(lockmgr.NewPlugin()), db.AutoMigrate(&lockmgr.Lock{}))", m.tableName)
	case r.fixable && cause == nil:
		msg = fmt.Sprintf("table %q: %s; run `lockmgr migrate` (or Manager.AutoMigrate)", m.tableName, strings.Join(r.problems, "; "))
	case r.fixable:
		msg = fmt.Sprintf("table %q: %s", m.tableName, strings.Join(r.problems, "; "))
	default:
		msg = fmt.Sprintf("table %q: %s; lockmgr cannot repair this: rename the table, let lockmgr create it anew "+
			"and copy the rows over", m.tableName, strings.Join(r.problems, "; "))
	}
	return &schemaError{msg: ErrSchema.Error() + ": " + msg, cause: cause}
}

// schemaError matches ErrSchema and the cause, if any.
type schemaError struct {
	msg   string
	cause error
}

func (e *schemaError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *schemaError) Unwrap() []error { return []error{ErrSchema, e.cause} }

// column is one column as the catalog describes it.
type column struct {
	name      string
	length    int64  // characters of a varchar, 0 for other types
	collation string // MySQL/MariaDB
	key       bool   // part of the primary key
	typ       string // the type's name, lower case
}

// lockColumns are the columns lockmgr reads and writes.
var lockColumns = []string{"name", "locked_by", "lock_process", "locked_until", "token", "fence", "created_at", "updated_at"}

// inspect reads the table's columns and side structures from the catalog.
func (m *Manager) inspect(ctx context.Context, db *gorm.DB) (report, error) {
	cols, err := m.columns(db)
	if err != nil || len(cols) == 0 {
		return report{missing: err == nil}, err
	}
	r := report{cols: cols}
	for _, name := range lockColumns {
		if _, ok := cols[name]; !ok {
			r.add(true, "column %s is missing", name)
		}
	}
	name := cols["name"]
	switch {
	case name.name == "":
	case !name.key:
		r.add(false, "column name is not the primary key")
	case name.length > 0 && name.length < MaxNameLen:
		r.add(true, "column name holds %d characters, lockmgr needs %d", name.length, MaxNameLen)
	}
	if m.d.kind == "mysql" {
		m.checkCollations(&r, cols)
	}
	side, err := m.sidePresent(db)
	if err != nil {
		return r, err
	}
	if !side {
		r.add(true, "side structures %s are missing", strings.Join(m.sideNames(), ", "))
	}
	return r, nil
}

// checkCollations flags a name or token that is not byte-exact.
func (m *Manager) checkCollations(r *report, cols map[string]column) {
	for _, c := range []string{"name", "token"} {
		if have := cols[c].collation; cols[c].name != "" && have != m.d.srv.nameCollation {
			r.add(true, "column %s compares with collation %s (case-insensitive or padding trailing spaces), lockmgr needs %s", c, have, m.d.srv.nameCollation)
		}
	}
}

// columns reads the table's columns; none when it does not exist.
func (m *Manager) columns(db *gorm.DB) (map[string]column, error) {
	rows, err := db.Raw(catalogs[m.d.kind].columns, m.d.schema(m.tableName), m.d.bareTable(m.tableName)).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]column{}
	for rows.Next() {
		var c column
		var key int64
		if err := rows.Scan(&c.name, &c.length, &c.collation, &key, &c.typ); err != nil {
			return nil, err
		}
		c.name, c.key, c.typ = strings.ToLower(c.name), key > 0, strings.ToLower(c.typ)
		out[c.name] = c
	}
	return out, rows.Err()
}

// sidePresent reports whether the side tables and triggers exist.
func (m *Manager) sidePresent(db *gorm.DB) (bool, error) {
	if m.d.kind == "mysql" { // also a <table>_fence another process has not yet filled
		gaps, err := m.mysqlFenceGaps(db)
		return len(gaps) == 0, err
	}
	names := m.sideNames()
	if len(names) == 0 {
		return true, nil
	}
	var n int64
	err := db.Raw(catalogs[m.d.kind].side, m.d.schema(m.tableName), names).Scan(&n).Error
	return n == int64(len(names)), err
}
