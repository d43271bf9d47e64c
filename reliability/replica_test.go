package reliability

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"sort"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver to create the replica database
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/plugin/dbresolver"

	"github.com/gormlock/lockmgr"
)

// makeReplicaDSN creates a second, separate database that plays the
// replica, dropped at the end, and returns its DSN.
func makeReplicaDSN(t *testing.T, tg target) string {
	t.Helper()
	name := "lockmgr_replica_" + suffix()
	switch tg.Driver {
	case "sqlite":
		return sqliteDSN(filepath.Join(t.TempDir(), "replica.db"))
	case "postgres":
		admin, err := sql.Open("pgx", tg.DSN)
		require.NoError(t, err)
		t.Cleanup(func() { _ = admin.Close() })
		_, err = admin.Exec("CREATE DATABASE " + name)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
		u, err := url.Parse(tg.DSN)
		require.NoError(t, err)
		u.Path = "/" + name
		return u.String()
	case "mysql":
		admin, err := sql.Open("mysql", tg.DSN)
		require.NoError(t, err)
		t.Cleanup(func() { _ = admin.Close() })
		_, err = admin.Exec("CREATE DATABASE " + name)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + name) })
		cfg, err := mysqldrv.ParseDSN(tg.DSN)
		require.NoError(t, err)
		cfg.DBName = name
		return cfg.FormatDSN()
	}
	t.Fatalf("no replica for %s", tg.Driver)
	return ""
}

func dialector(driver, dsn string) gorm.Dialector {
	switch driver {
	case "postgres":
		return postgres.Open(dsn)
	case "mysql":
		return mysql.Open(dsn)
	default:
		return sqlite.Open(dsn)
	}
}

// TestReplicaRouting configures gorm.io/plugin/dbresolver with a replica
// whose lock table is visibly stale: it holds "stale" forever and lacks
// "fresh", which the primary holds. Every lockmgr read and write must go
// to the primary, and the replica must be left untouched.
func TestReplicaRouting(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		table := tableName("lock")
		replicaDSN := makeReplicaDSN(t, tg)
		replicaDB := mustOpen(t, target{Driver: tg.Driver, DSN: replicaDSN})
		replica := newManager(t, replicaDB, table)
		_, err := replica.GetLock(ctx, "stale", lockmgr.NoExpiry())
		require.NoError(t, err)
		_, err = replica.GetLock(ctx, "stale-2", lockmgr.NoExpiry())
		require.NoError(t, err)
		replicaBefore := rowSnap(t, replicaDB, table)

		primaryDB := mustOpen(t, tg)
		primary := newManager(t, primaryDB, table)
		fresh, err := primary.GetLock(ctx, "fresh", lockmgr.Expires(time.Minute))
		require.NoError(t, err)

		db := mustOpen(t, tg)
		require.NoError(t, db.Use(dbresolver.Register(dbresolver.Config{
			Replicas: []gorm.Dialector{dialector(tg.Driver, replicaDSN)},
		})))
		m, err := lockmgr.New(db, lockmgr.WithTable(table))
		require.NoError(t, err)
		checks := replicaChecks(ctx, m, primary, fresh)
		for _, c := range checks {
			t.Run(c.what, func(t *testing.T) { c.fn(t) })
		}
		assert.Equal(t, replicaBefore, rowSnap(t, replicaDB, table), "lockmgr wrote to the replica")
		report(t, "replica", map[string]any{"db": tg.Name, "checks": len(checks)})
	})
}

type replicaCheck struct {
	what string
	fn   func(t *testing.T)
}

// replicaChecks are calls whose answer differs between primary and the
// stale replica.
func replicaChecks(ctx context.Context, m, primary *lockmgr.Manager, fresh *lockmgr.Lock) []replicaCheck {
	return []replicaCheck{
		{"IsLocked sees the primary's lock", func(t *testing.T) {
			held, err := m.IsLocked(ctx, "fresh")
			require.NoError(t, err)
			assert.True(t, held, "IsLocked(fresh) answered from the replica")
		}},
		{"IsLocked ignores the replica's stale lock", func(t *testing.T) {
			held, err := m.IsLocked(ctx, "stale")
			require.NoError(t, err)
			assert.False(t, held, "IsLocked(stale) answered from the replica")
		}},
		{"List reads the primary", func(t *testing.T) {
			list, err := m.List(ctx)
			require.NoError(t, err)
			assert.Equal(t, []string{"fresh"}, lockNames(list), "List answered from the replica")
		}},
		{"GetLock is refused on the primary's lock", func(t *testing.T) {
			_, err := m.GetLock(ctx, "fresh")
			assert.ErrorIs(t, err, lockmgr.ErrLocked)
		}},
		{"GetLock takes what only the replica holds", func(t *testing.T) {
			l, err := m.GetLock(ctx, "stale", lockmgr.Expires(time.Minute))
			require.NoError(t, err)
			held, err := primary.IsLocked(ctx, "stale")
			require.NoError(t, err)
			assert.True(t, held, "GetLock wrote somewhere other than the primary")
			assert.NoError(t, m.Release(ctx, l))
		}},
		{"Renew and RenewLock find the primary's lock", func(t *testing.T) {
			_, err := m.Renew(ctx, fresh, lockmgr.Expires(time.Minute))
			assert.NoError(t, err, "Renew(fresh)")
			_, err = m.RenewLock(ctx, "fresh", lockmgr.Expires(time.Minute))
			assert.NoError(t, err, "RenewLock(fresh)")
			_, err = m.RenewLock(ctx, "stale-2")
			assert.ErrorIs(t, err, lockmgr.ErrLockNotFound, "RenewLock(stale-2) found the replica's row")
		}},
		{"SetLock sees the primary's rows", func(t *testing.T) {
			res, err := m.SetLock(ctx, []string{"fresh", "stale-2"}, lockmgr.NoRenew(), lockmgr.Expires(time.Minute))
			require.NoError(t, err)
			require.Len(t, res.Statuses, 2)
			st := map[string]bool{}
			for _, s := range res.Statuses {
				st[s.Name] = s.WasLocked
			}
			assert.Equal(t, map[string]bool{"fresh": true, "stale-2": false}, st, "SetLock read the replica")
			assert.NoError(t, m.Unlock(ctx, "stale-2"))
		}},
		{"a scope keeps its lock alive on the primary", func(t *testing.T) {
			s, err := m.Acquire(ctx, "scoped", lockmgr.Expires(900*time.Millisecond))
			require.NoError(t, err)
			time.Sleep(2 * time.Second)
			assert.NoError(t, s.Context().Err(), "the scope's renewals read the replica, which lacks the lock")
			held, err := primary.IsLocked(ctx, "scoped")
			require.NoError(t, err)
			assert.True(t, held)
			assert.NoError(t, s.Close())
		}},
		{"Release reaches the primary", func(t *testing.T) {
			assert.NoError(t, m.Release(ctx, fresh))
			held, err := primary.IsLocked(ctx, "fresh")
			require.NoError(t, err)
			assert.False(t, held)
		}},
		{"CleanLocks and Reset act on the primary", func(t *testing.T) {
			_, err := primary.GetLock(ctx, "expiring", lockmgr.Expires(time.Millisecond))
			require.NoError(t, err)
			time.Sleep(20 * time.Millisecond)
			n, err := m.CleanLocks(ctx)
			require.NoError(t, err)
			assert.EqualValues(t, 1, n, "CleanLocks counted rows elsewhere")
			_, err = primary.GetLock(ctx, "to-reset", lockmgr.Expires(time.Minute))
			require.NoError(t, err)
			n, err = m.Reset(ctx)
			require.NoError(t, err)
			assert.EqualValues(t, 1, n, "Reset counted rows elsewhere")
		}},
	}
}

func lockNames(ls []lockmgr.Lock) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	sort.Strings(out)
	return out
}
