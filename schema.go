package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/internal/engine"
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
	used atomic.Bool   // a check succeeded once: no DDL from a call any more
	sem  chan struct{} // one check at a time
	// byWidth is how many characters locked_by holds where the column
	// is narrower than LockedBy's own limit (Django's 100), else 0.
	byWidth atomic.Int64
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

// CheckTable checks the lock table now, as a Manager's first call does,
// and, if the Manager has not used its table yet, completes it the same
// way (see AutoMigrate); once it has, or inside WithTx, it only reads the
// catalog. It returns nil when every call can work, an error
// matching ErrSchema that says what is wrong and how to fix it, or the
// database's own error. Use it to fail fast at start or as a readiness
// probe.
func (m *Manager) CheckTable(ctx context.Context) error {
	m.schema.ok.Store(false)
	m.schema.txOK.Store(false)
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
	return m.complete(ctx)
}

// complete checks that the table exists and, if it lacks something and
// the Manager has never used it, completes it (firstUse). A complete table
// costs two catalog queries and no lock.
func (m *Manager) complete(ctx context.Context) error {
	r, err := m.inspect(ctx, m.conn(ctx))
	switch {
	case err != nil:
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, err)
	case r.missing:
		return m.schemaError(r, nil)
	case r.usable():
		m.checked(r)
		return nil
	case m.schema.used.Load():
		return m.runtimeSchemaError(&r, nil)
	}
	return m.firstUse().AutoMigrate(ctx)
}

// checked records a usable table: calls may use it, and no call runs DDL
// on it any more.
func (m *Manager) checked(r report) {
	w := r.cols["locked_by"].Length
	if w >= MaxNameLen {
		w = 0
	}
	m.schema.byWidth.Store(w)
	m.schema.used.Store(true)
	m.schema.ok.Store(true)
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
// ready. If op fails because a column or table is missing, or a value
// does not fit its column, the catalog is read (no DDL): a table that
// looks usable gets op retried once (TiDB reports a concurrent schema
// change so); otherwise, and inside a caller's transaction, which such a
// failure may have aborted, the error is ErrSchema naming the fix.
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
	if err == nil || !m.d.eng.SchemaShaped(err) {
		return err
	}
	switch {
	case m.inTx && errors.Is(err, ErrSchema):
		return err
	case m.inTx:
		m.schema.txOK.Store(false)
		return m.runtimeSchemaError(nil, err)
	}
	r, ierr := m.inspect(ctx, m.conn(ctx))
	if ierr == nil && r.usable() {
		m.checked(r)
		if !m.d.eng.TooLong(err) {
			if err = op(); err == nil || !m.d.eng.SchemaShaped(err) {
				return err
			}
		}
		return m.runtimeSchemaError(&r, err)
	}
	if ierr == nil {
		m.schema.ok.Store(false) // the next call reads the catalog again
		if r.missing {
			r.problems = m.elsewhere(ctx)
		}
		return m.runtimeSchemaError(&r, err)
	}
	return m.runtimeSchemaError(nil, err)
}

// runtimeSchemaError is a schema-shaped statement error of a Manager that
// has used its table, with what the catalog says (r, if read) and the fix.
func (m *Manager) runtimeSchemaError(r *report, err error) error {
	what := "a statement failed for want of a table or column, or with a value too long for its column"
	switch {
	case r != nil && r.missing && len(r.problems) > 0:
		what = "the table does not exist on this connection, whose search_path does not reach schema " +
			strings.Join(r.problems, ", ") + " where it is: qualify it (WithTable(\"schema." + m.tableName +
			"\")) or give every pooled connection one search_path"
	case r != nil && r.missing:
		what = "the table does not exist (any more)"
	case r != nil && len(r.problems) > 0:
		what = strings.Join(r.problems, "; ")
	case m.d.eng.TooLong(err):
		what = "a value does not fit its column"
		if w := m.schema.byWidth.Load(); w > 0 {
			what += fmt.Sprintf(" (locked_by holds %d characters)", w)
		}
	case r != nil && m.d.eng.SearchPath(m.d.t):
		what += "; the table exists, so some pooled connection resolves its name through another search_path: " +
			"qualify it (WithTable(\"schema." + m.tableName + "\")) or give every connection one search_path"
	}
	msg := fmt.Sprintf("table %q: %s; lockmgr changes no table at run time: run m.AutoMigrate(ctx) or `lockmgr migrate`", m.tableName, what)
	return &schemaError{msg: ErrSchema.Error() + ": " + msg, cause: err}
}

// elsewhere lists the schemas other than this connection's where a
// table of an unqualified name exists: another search_path (PostgreSQL).
func (m *Manager) elsewhere(ctx context.Context) []string {
	return m.d.eng.Elsewhere(m.conn(ctx), m.d.t)
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

// column is one column as the catalog describes it (engine.Column).
type column = engine.Column

// inspect reads the table's columns and side structures from the catalog
// (the engine's Migrator).
func (m *Manager) inspect(ctx context.Context, db *gorm.DB) (report, error) {
	t := m.d.t
	cols, err := m.d.eng.Columns(db, t)
	if err != nil || len(cols) == 0 {
		return report{missing: err == nil}, err
	}
	r := report{cols: cols}
	for _, name := range engine.LockColumns {
		if _, ok := cols[name]; !ok {
			r.add(true, "column %s is missing", name)
		}
	}
	name := cols["name"]
	switch {
	case name.Name == "":
	case !name.Key:
		r.add(false, "column name is not the primary key")
	case name.Length > 0 && name.Length < MaxNameLen:
		r.add(true, "column name holds %d characters, lockmgr needs %d", name.Length, MaxNameLen)
	}
	m.d.eng.CheckColumns(cols, r.add)
	names, present, err := m.d.eng.Side(ctx, db, mconn{m}, t)
	if err != nil {
		return r, err
	}
	if !present {
		r.add(true, "side structures %s are missing", strings.Join(names, ", "))
	}
	return r, nil
}
