package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Database kinds, as given to -db.
const (
	dbSQLite   = "sqlite"
	dbPostgres = "postgres"
	dbMySQL    = "mysql"
)

// allKinds is the order in which -db all runs the databases.
var allKinds = []string{dbSQLite, dbPostgres, dbMySQL}

// dbTitle names each kind in the results.
var dbTitle = map[string]string{dbSQLite: "SQLite", dbPostgres: "PostgreSQL", dbMySQL: "MariaDB"}

// target is one database under test, with the names of this run's tables.
type target struct {
	kind    string
	dsn     string // as gorm's dialector takes it; for SQLite the file DSN
	gdb     *gorm.DB
	sqlDB   *sql.DB
	version string
	tables  tableNames
	salt    string // keeps this run's native lock keys and Redis keys apart
}

// tableNames are this run's own tables; all are dropped at the end.
type tableNames struct {
	Lockmgr     string `json:"lockmgr"`
	Floor       string `json:"floor"`
	Django      string `json:"django"`
	LockmgrRows string `json:"lockmgr_rows"` // the table-size workload's filled tables
	FloorRows   string `json:"floor_rows"`
}

func newTableNames(suffix string) tableNames {
	return tableNames{
		Lockmgr:     "bench_lockmgr_" + suffix,
		Floor:       "bench_floor_" + suffix,
		Django:      "bench_django_" + suffix,
		LockmgrRows: "bench_lockmgr_rows_" + suffix,
		FloorRows:   "bench_floor_rows_" + suffix,
	}
}

// sqliteDSN is the SQLite file DSN used by every locker: WAL, NORMAL sync,
// immediate transactions and a busy timeout, as lockmgr's docs recommend.
func sqliteDSN(path string) string {
	return "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate"
}

// openTarget connects to one database. conns bounds the pool; idle
// connections are kept so that goroutines never pay for a new connection.
func openTarget(ctx context.Context, kind, dsn string, conns int) (*target, error) {
	var dial gorm.Dialector
	switch kind {
	case dbSQLite:
		dial = sqlite.Open(dsn)
	case dbPostgres:
		dial = postgres.Open(dsn)
	case dbMySQL:
		dial = mysql.Open(dsn)
	default:
		return nil, fmt.Errorf("unknown database %q", kind)
	}
	gdb, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", kind, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", kind, err)
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect %s: %w", kind, err)
	}
	t := &target{kind: kind, dsn: dsn, gdb: gdb, sqlDB: sqlDB}
	t.version = t.serverVersion(ctx)
	return t, nil
}

// sqlitePath returns the file a run's SQLite database lives in.
func sqlitePath(dir, suffix string) string {
	return filepath.Join(dir, "bench_"+suffix+".db")
}

func (t *target) serverVersion(ctx context.Context) string {
	q := map[string]string{
		dbSQLite:   "SELECT 'SQLite ' || sqlite_version()",
		dbPostgres: "SELECT version()",
		dbMySQL:    "SELECT CONCAT(VERSION(), ' ', @@version_comment)",
	}[t.kind]
	var v string
	if err := t.sqlDB.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	if i := strings.Index(v, " on "); t.kind == dbPostgres && i > 0 {
		v = v[:i]
	}
	return v
}

// rebind turns ? placeholders into $1, $2 … on PostgreSQL.
func (t *target) rebind(q string) string {
	if t.kind != dbPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// timeArg is how a point in time is passed to this database: UTC text on
// SQLite (Django's and lockmgr's format), a time.Time elsewhere.
func (t *target) timeArg(at time.Time) any {
	if t.kind == dbSQLite {
		return at.UTC().Format("2006-01-02 15:04:05.000000")
	}
	return at.UTC()
}

// quote quotes an identifier for this database.
func (t *target) quote(name string) string {
	if t.kind == dbMySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

// exec runs statements one by one, stopping at the first error.
func (t *target) exec(ctx context.Context, stmts ...string) error {
	for _, s := range stmts {
		if _, err := t.sqlDB.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

// dropTables drops this run's tables; errors are reported, not fatal.
func (t *target) dropTables(ctx context.Context) error {
	var errs []string
	tn := t.tables
	// lockmgr's AutoMigrate adds <table>_fence on SQLite and MySQL.
	for _, name := range []string{tn.Lockmgr, tn.Lockmgr + "_fence", tn.Floor, tn.Django,
		tn.LockmgrRows, tn.LockmgrRows + "_fence", tn.FloorRows} {
		if err := t.exec(ctx, "DROP TABLE IF EXISTS "+t.quote(name)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("drop tables: %s", strings.Join(errs, "; "))
	}
	return nil
}

// analyze refreshes the planner's statistics of a table after a bulk fill.
func (t *target) analyze(ctx context.Context, table string) error {
	switch t.kind {
	case dbPostgres:
		return t.exec(ctx, "ANALYZE "+t.quote(table))
	case dbMySQL:
		rows, err := t.sqlDB.QueryContext(ctx, "ANALYZE TABLE "+t.quote(table))
		if err != nil {
			return err
		}
		return rows.Close()
	default:
		return t.exec(ctx, "ANALYZE "+t.quote(table))
	}
}

func (t *target) close() error { return t.sqlDB.Close() }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// removeSQLite deletes a run's SQLite files (database, WAL, shared memory).
func removeSQLite(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Remove(p)
	}
}
