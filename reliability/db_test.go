package reliability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// target is one database the suite runs against.
type target struct {
	Name   string // "sqlite", "postgres" or "mysql"
	Driver string // the gorm dialector: "sqlite", "postgres" or "mysql"
	DSN    string
}

// configuredTargets lists SQLite and every server database whose DSN is set.
// SQLite's DSN is filled in per test (a temp file), so it is empty here.
func configuredTargets() []target {
	ts := []target{{Name: "sqlite", Driver: "sqlite"}}
	if dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN"); dsn != "" {
		ts = append(ts, target{Name: "postgres", Driver: "postgres", DSN: dsn})
	}
	if dsn := os.Getenv("LOCKMGR_TEST_MYSQL_DSN"); dsn != "" {
		ts = append(ts, target{Name: "mysql", Driver: "mysql", DSN: dsn})
	}
	return ts
}

// forEachDB runs fn as a subtest on every configured database.
func forEachDB(t *testing.T, fn func(t *testing.T, tg target)) {
	t.Helper()
	for _, tg := range configuredTargets() {
		t.Run(tg.Name, func(t *testing.T) {
			if tg.Driver == "sqlite" {
				tg.DSN = sqliteDSN(filepath.Join(t.TempDir(), "lockmgr.db"))
			}
			fn(t, tg)
		})
	}
}

// serverTargets is configuredTargets without SQLite (no network, no server).
func forEachServerDB(t *testing.T, fn func(t *testing.T, tg target)) {
	t.Helper()
	n := 0
	for _, tg := range configuredTargets() {
		if tg.Driver == "sqlite" {
			continue
		}
		n++
		t.Run(tg.Name, func(t *testing.T) { fn(t, tg) })
	}
	if n == 0 {
		t.Skip("no server database: set LOCKMGR_TEST_POSTGRES_DSN and/or LOCKMGR_TEST_MYSQL_DSN")
	}
}

// sqliteDSN opens path in WAL mode with a busy timeout and immediate
// transactions, so several processes can share the file.
func sqliteDSN(path string) string {
	return "file:" + path + "?_busy_timeout=20000&_journal_mode=WAL&_txlock=immediate&_synchronous=NORMAL"
}

// openDB opens a *gorm.DB without logging.
func openDB(driver, dsn string) (*gorm.DB, error) {
	var d gorm.Dialector
	switch driver {
	case "sqlite":
		d = sqlite.Open(dsn)
	case "postgres":
		d = postgres.Open(dsn)
	case "mysql":
		d = mysql.Open(dsn)
	default:
		return nil, fmt.Errorf("unknown driver %q", driver)
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", driver, err)
	}
	return db, nil
}

// mustOpen opens tg's database for the test and closes it in t.Cleanup.
func mustOpen(t *testing.T, tg target) *gorm.DB {
	t.Helper()
	db, err := openDB(tg.Driver, tg.DSN)
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// suffix returns a random lower-case hex string for table names.
func suffix() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}

// tableName returns a table name of the suite's own: rel_<kind>_<random>.
func tableName(kind string) string {
	return "rel_" + kind + "_" + suffix()
}

// dropTables drops the tables in t.Cleanup through db.
func dropTables(t *testing.T, db *gorm.DB, tables ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, tb := range tables {
			if err := db.Migrator().DropTable(tb); err != nil {
				t.Logf("drop %s: %v", tb, err)
			}
		}
	})
}

// newManager builds a Manager on its own migrated table, dropped at the end.
func newManager(t *testing.T, db *gorm.DB, table string, opts ...lockmgr.Option) *lockmgr.Manager {
	t.Helper()
	m, err := lockmgr.New(db, append([]lockmgr.Option{lockmgr.WithTable(table)}, opts...)...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, m.AutoMigrate(ctx))
	dropTables(t, db, table, table+"_fence") // and the core's fence side table, where it keeps one
	return m
}

// countRows counts the rows of table, live or expired.
func countRows(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Table(table).Count(&n).Error)
	return n
}

// short truncates s for error tallies.
func short(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}
