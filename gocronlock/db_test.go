package gocronlock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// A backend is one database the tests run on: SQLite always, PostgreSQL,
// MariaDB and TiDB when their DSNs are set (LOCKMGR_TEST_POSTGRES_DSN,
// LOCKMGR_TEST_MYSQL_DSN, LOCKMGR_TEST_TIDB_DSN), as in the root suite.
type backend struct {
	name, kind, dsn string   // kind: GORM's dialector name
	nodes           []string // a cluster's nodes (Galera), one per replica in turn; dsn is the first
}

func backends(t testing.TB) []backend {
	out := []backend{{name: "sqlite", kind: "sqlite",
		dsn: "file:" + filepath.Join(t.TempDir(), "locks.db") + "?_busy_timeout=10000&_journal_mode=WAL"}}
	for _, b := range []backend{
		{name: "postgres", kind: "postgres", dsn: os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")},
		{name: "mysql", kind: "mysql", dsn: os.Getenv("LOCKMGR_TEST_MYSQL_DSN")},
		{name: "tidb", kind: "mysql", dsn: os.Getenv("LOCKMGR_TEST_TIDB_DSN")},
	} {
		if b.dsn != "" {
			out = append(out, b)
		}
	}
	return out
}

// open opens b's database, closed at the test's end.
// tortureBackends are backends, and a MariaDB Galera cluster when
// LOCKMGR_TEST_GALERA_DSNS names its nodes (space-separated): the
// torture's replicas then run on different nodes.
func tortureBackends(t testing.TB) []backend {
	out := backends(t)
	if nodes := strings.Fields(os.Getenv("LOCKMGR_TEST_GALERA_DSNS")); len(nodes) > 0 {
		out = append(out, backend{name: "galera", kind: "mysql", dsn: nodes[0], nodes: nodes})
	}
	return out
}

// node is the DSN replica i uses.
func (b backend) node(i int) string {
	if len(b.nodes) == 0 {
		return b.dsn
	}
	return b.nodes[i%len(b.nodes)]
}

func (b backend) open(t testing.TB) *gorm.DB {
	var d gorm.Dialector
	switch b.kind {
	case "postgres":
		d = postgres.Open(b.dsn)
	case "mysql":
		d = mysql.Open(b.dsn)
	default:
		d = sqlite.Open(b.dsn)
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	return db
}

func uniqueTable(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// env is one test's database, table and Manager on it.
type env struct {
	b     backend
	db    *gorm.DB
	table string
	m     *lockmgr.Manager
}

// eachDB runs fn on every backend, each with a fresh lock table dropped
// afterwards.
func eachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			table := uniqueTable("gocronlock_t_")
			t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
			e := &env{b: b, db: db, table: table}
			e.m = e.manager(t, "owner")
			require.NoError(t, e.m.AutoMigrate(context.Background()))
			fn(t, e)
		})
	}
}

func (e *env) manager(t testing.TB, owner string, opts ...lockmgr.Option) *lockmgr.Manager {
	m, err := lockmgr.New(e.db, append([]lockmgr.Option{lockmgr.WithTable(e.table), lockmgr.WithOwner(owner)}, opts...)...)
	require.NoError(t, err)
	return m
}

// rows counts the rows of the lock table, live or expired.
func (e *env) rows(t testing.TB) int64 {
	var n int64
	require.NoError(t, e.db.Table(e.table).Count(&n).Error)
	return n
}
