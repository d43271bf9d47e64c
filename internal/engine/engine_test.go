package engine

import (
	"errors"
	"fmt"
	"testing"
)

// pgError carries an SQLSTATE, as pgx's *pgconn.PgError does.
type pgError struct{ state string }

func (e pgError) Error() string    { return "ERROR: (SQLSTATE " + e.state + ")" }
func (e pgError) SQLState() string { return e.state }

func TestErrors(t *testing.T) {
	pg, my, ti, lite := For("postgres", Server{}), For("mysql", Server{}), For("mysql", Server{TiDB: true}), For("sqlite", Server{})
	wrap := func(err error) error { return fmt.Errorf("lockmgr: acquire %q: %w", "n", err) }
	for _, c := range []struct {
		name string
		got  bool
		want bool
	}{
		{"nil is never retryable", pg.Retryable(nil, false) || my.Retryable(nil, false) || lite.Retryable(nil, false), false},
		{"pg deadlock", pg.Retryable(wrap(pgError{"40P01"}), true), true},
		{"pg serialization", pg.Retryable(pgError{"40001"}, false), true},
		{"pg lock timeout is not retryable", pg.Retryable(pgError{"55P03"}, false), false},
		{"mysql deadlock", my.Retryable(wrap(errors.New("Error 1213 (40001): Deadlock found")), false), true},
		{"mysql deadlock in a caller's tx", my.Retryable(errors.New("Error 1213 (40001): Deadlock found"), true), false},
		{"mysql lock wait timeout is not retryable", my.Retryable(errors.New("Error 1205 (HY000): Lock wait timeout"), false), false},
		{"tidb write conflict", ti.Retryable(errors.New("Error 9007 (HY000): Write conflict"), false), true},
		{"tidb retry limit", ti.Retryable(errors.New("pessimistic lock retry limit reached"), false), true},
		{"9007 is TiDB's only", my.Retryable(errors.New("Error 9007 (HY000): Write conflict"), false), false},
		{"sqlite busy is not retryable", lite.Retryable(errors.New("database is locked"), false), false},
		{"pg lock_not_available", pg.LockWaitTimeout(wrap(pgError{"55P03"})), true},
		{"mysql 1205", my.LockWaitTimeout(errors.New("Error 1205 (HY000): Lock wait timeout exceeded")), true},
		{"mysql NOWAIT", ti.LockWaitTimeout(errors.New("Error 3572 (HY000): Statement aborted because lock(s) could not be acquired")), true},
		{"sqlite locked", lite.LockWaitTimeout(errors.New("database is locked (5) (SQLITE_BUSY)")), true},
		{"sqlite table locked", lite.LockWaitTimeout(errors.New("database table is locked")), true},
		{"a deadlock is no lock wait", my.LockWaitTimeout(errors.New("Error 1213 (40001): Deadlock found")), false},
		{"pg DDL lock busy", pg.LockBusy(pgError{"55P03"}), true},
		{"mysql DDL lock busy", my.LockBusy(errors.New("Error 1205 (HY000): Lock wait timeout exceeded")), true},
		{"sqlite DDL busy", lite.LockBusy(errors.New("SQLITE_BUSY")), true},
		{"nil is never busy", pg.LockBusy(nil) || my.LockBusy(nil) || lite.LockBusy(nil), false},
		{"pg undefined column", pg.SchemaShaped(wrap(pgError{"42703"})), true},
		{"pg value too long", pg.SchemaShaped(pgError{"22001"}), true},
		{"pg unique violation is not the schema", pg.SchemaShaped(pgError{"23505"}), false},
		{"mysql no such table", my.SchemaShaped(errors.New("Error 1146 (42S02): Table 'test.x' doesn't exist")), true},
		{"tidb schema changed", ti.SchemaShaped(errors.New("Error 8028 (HY000): Information schema is changed")), true},
		{"sqlite no such column", lite.SchemaShaped(errors.New("no such column: fence")), true},
		{"sqlite's messages are not MySQL's", my.SchemaShaped(errors.New("no such column: fence")), false},
		{"nil is never the schema", pg.SchemaShaped(nil) || my.SchemaShaped(nil) || lite.SchemaShaped(nil), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if For("oracle", Server{}) != nil {
		t.Error("For: an unsupported kind has an engine")
	}
}
