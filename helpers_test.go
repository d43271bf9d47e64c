package lockmgr_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

const (
	envPostgres = "LOCKMGR_TEST_POSTGRES_DSN"
	envMySQL    = "LOCKMGR_TEST_MYSQL_DSN"
	envTiDB     = "LOCKMGR_TEST_TIDB_DSN"
)

// TestMain fails the run if any goroutine outlives the tests, once the
// shared database pools are closed.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(envMigrateChild); cfg != "" {
		os.Exit(runMigrateChild(cfg))
	}
	code := m.Run()
	for _, db := range sharedDBs {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

// backend is one database the suite runs on; kind is its SQL dialect
// when that differs from its name (TiDB speaks "mysql").
type backend struct {
	name string
	open func(t testing.TB) *gorm.DB
	kind string
}

func (b backend) dialect() string {
	if b.kind != "" {
		return b.kind
	}
	return b.name
}

var (
	sharedMu  sync.Mutex
	sharedDBs = map[string]*gorm.DB{}
)

func quiet() *gorm.Config {
	return &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
}

// shared opens a server database once per test binary.
func shared(t testing.TB, key string, d gorm.Dialector) *gorm.DB {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if db := sharedDBs[key]; db != nil {
		return db
	}
	db, err := gorm.Open(d, quiet())
	require.NoError(t, err, "open %s: the database it names must be reachable", key)
	sharedDBs[key] = db
	return db
}

// sqliteDSN is the DSN the README recommends: WAL and a busy timeout.
func sqliteDSN(path string) string {
	return "file:" + path + "?_busy_timeout=10000&_journal_mode=WAL"
}

// backends lists SQLite always, and PostgreSQL, MariaDB/MySQL and TiDB
// when their DSNs are set.
func backends() []backend {
	out := []backend{{name: "sqlite", open: func(t testing.TB) *gorm.DB {
		db, err := gorm.Open(sqlite.Open(sqliteDSN(t.TempDir()+"/locks.db")), quiet())
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		return db
	}}}
	if dsn := os.Getenv(envPostgres); dsn != "" {
		out = append(out, backend{name: "postgres", open: func(t testing.TB) *gorm.DB {
			return shared(t, "postgres", postgres.Open(dsn))
		}})
	}
	if dsn := os.Getenv(envMySQL); dsn != "" {
		out = append(out, backend{name: "mysql", open: func(t testing.TB) *gorm.DB {
			return shared(t, "mysql", mysql.Open(dsn))
		}})
	}
	if dsn := os.Getenv(envTiDB); dsn != "" {
		out = append(out, backend{name: "tidb", kind: "mysql", open: func(t testing.TB) *gorm.DB {
			return shared(t, "tidb", mysql.Open(dsn))
		}})
	}
	return out
}

// env is what each test gets: a database, a fresh table and a Manager on it.
type env struct {
	t     *testing.T
	kind  string
	db    *gorm.DB
	table string
	m     *lockmgr.Manager
	ctx   context.Context
}

// eachDB runs fn once per backend, each with its own migrated table that
// is dropped afterwards.
func eachDB(t *testing.T, fn func(t *testing.T, e *env), opts ...lockmgr.Option) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			fn(t, newEnv(t, b, opts...))
		})
	}
}

func newEnv(t *testing.T, b backend, opts ...lockmgr.Option) *env {
	db := b.open(t)
	table := uniqueTable()
	e := &env{t: t, kind: b.dialect(), db: db, table: table, ctx: context.Background()}
	t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
	e.m = e.manager(opts...)
	require.NoError(t, e.m.AutoMigrate(e.ctx))
	return e
}

func (e *env) manager(opts ...lockmgr.Option) *lockmgr.Manager {
	m, err := lockmgr.New(e.db, append([]lockmgr.Option{lockmgr.WithTable(e.table)}, opts...)...)
	require.NoError(e.t, err)
	return m
}

func uniqueTable() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "lockmgr_t_" + hex.EncodeToString(b[:])
}

// lock takes name or fails the test.
func (e *env) lock(name string, opts ...lockmgr.LockOption) *lockmgr.Lock {
	e.t.Helper()
	l, err := e.m.GetLock(e.ctx, name, opts...)
	require.NoError(e.t, err)
	return l
}

func (e *env) isLocked(name string) bool {
	e.t.Helper()
	ok, err := e.m.IsLocked(e.ctx, name)
	require.NoError(e.t, err)
	return ok
}

// expire moves name's expiry 10 s into the past, the way django-lockmgr's
// test 4 does, using the database's own clock.
func (e *env) expire(name string) {
	e.t.Helper()
	q := map[string]string{
		"postgres": "UPDATE %s SET locked_until = statement_timestamp() - interval '10 seconds' WHERE name = ?",
		"mysql":    "UPDATE %s SET locked_until = UTC_TIMESTAMP(6) - INTERVAL 10 SECOND WHERE name = ?",
		"sqlite":   "UPDATE %s SET locked_until = strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-10 seconds') WHERE name = ?",
	}[e.kind]
	res := e.db.Exec(fmt.Sprintf(q, e.table), name)
	require.NoError(e.t, res.Error)
	require.EqualValues(e.t, 1, res.RowsAffected)
}

// secondsLeft is how long l has left, in seconds.
func secondsLeft(t *testing.T, l *lockmgr.Lock) float64 {
	t.Helper()
	d, ok := l.ExpiresIn()
	require.True(t, ok, "lock %q never expires", l.Name)
	return d.Seconds()
}

// eventually polls cond for up to d (generous on a shared machine).
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, d, 10*time.Millisecond, msg)
}
