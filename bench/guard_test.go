package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// The cost of Manager.Guard: a transaction of one UPDATE, guarded
// (Guard's one statement first) against the same transaction unguarded,
// serially on one connection, in interleaved rounds. Run it with
//
//	LOCKMGR_BENCH_GUARD=1 go test -run TestGuardCost -v .
//
// (LOCKMGR_BENCH_GUARD_DUR sets a round's length, 1 s by default) or as Go
// benchmarks: go test -run '^$' -bench Guard .

// guardCounter is the row the measured transactions update.
type guardCounter struct {
	ID int64 `gorm:"primaryKey"`
	N  int64
}

// guardBench is one database's tables, Manager and held lock.
type guardBench struct {
	db      *gorm.DB
	m       *lockmgr.Manager
	l       *lockmgr.Lock
	counter string
	other   string // a second table, for the two-table baseline
}

// guardKinds are SQLite always, and every server whose DSN is set.
func guardKinds() map[string][2]string {
	k := map[string][2]string{dbSQLite: {dbSQLite, ""}}
	for name, env := range map[string]string{dbPostgres: "LOCKMGR_TEST_POSTGRES_DSN", dbMySQL: "LOCKMGR_TEST_MYSQL_DSN",
		"tidb": "LOCKMGR_TEST_TIDB_DSN"} {
		if dsn := os.Getenv(env); dsn != "" {
			kind := name
			if name == "tidb" {
				kind = dbMySQL
			}
			k[name] = [2]string{kind, dsn}
		}
	}
	return k
}

func newGuardBench(tb testing.TB, kind, dsn string) *guardBench {
	ctx := context.Background()
	if kind == dbSQLite {
		dsn = sqliteDSN(filepath.Join(tb.TempDir(), "guard.db"))
	}
	t, err := openTarget(ctx, kind, dsn, 2)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = t.close() })
	suffix := randomSuffix()
	table, counter, other := "bench_guard_"+suffix, "bench_guard_n_"+suffix, "bench_guard_o_"+suffix
	m, err := lockmgr.New(t.gdb, lockmgr.WithTable(table))
	require.NoError(tb, err)
	require.NoError(tb, m.AutoMigrate(ctx))
	require.NoError(tb, t.gdb.Table(counter).AutoMigrate(&guardCounter{}))
	require.NoError(tb, t.gdb.Table(counter).Create(&guardCounter{ID: 1}).Error)
	require.NoError(tb, t.gdb.Table(other).AutoMigrate(&guardCounter{}))
	require.NoError(tb, t.gdb.Table(other).Create(&guardCounter{ID: 1}).Error)
	tb.Cleanup(func() { _ = t.gdb.Migrator().DropTable(table, table+"_fence", counter, other) })
	l, err := m.GetLock(ctx, "guarded", lockmgr.NoExpiry())
	require.NoError(tb, err)
	return &guardBench{db: t.gdb, m: m, l: l, counter: counter, other: other}
}

// The transactions measured.
const (
	plainTx   = iota // one UPDATE
	guardedTx        // Guard, then the UPDATE
	twoTx            // the UPDATE and one of another table's row: what the guard adds, without the guard
)

// tx runs one transaction of one UPDATE, guarded or not.
func (g *guardBench) tx(ctx context.Context, kind int) error {
	return g.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		switch kind {
		case guardedTx:
			if err := g.m.Guard(ctx, tx, g.l); err != nil {
				return err
			}
		case twoTx:
			if err := tx.Table(g.other).Where("id = ?", 1).Update("n", gorm.Expr("n + 1")).Error; err != nil {
				return err
			}
		}
		return tx.Table(g.counter).Where("id = ?", 1).Update("n", gorm.Expr("n + 1")).Error
	})
}

// round runs transactions for d and returns their latencies.
func (g *guardBench) round(tb testing.TB, guarded int, d time.Duration) []time.Duration {
	var lat []time.Duration
	ctx := context.Background()
	for end := time.Now().Add(d); time.Now().Before(end); {
		start := time.Now()
		require.NoError(tb, g.tx(ctx, guarded))
		lat = append(lat, time.Since(start))
	}
	return lat
}

func TestGuardCost(t *testing.T) {
	if os.Getenv("LOCKMGR_BENCH_GUARD") == "" {
		t.Skip("a measurement: set LOCKMGR_BENCH_GUARD=1")
	}
	d := time.Second
	if v, err := time.ParseDuration(os.Getenv("LOCKMGR_BENCH_GUARD_DUR")); err == nil {
		d = v
	}
	for name, kd := range guardKinds() {
		t.Run(name, func(t *testing.T) {
			g := newGuardBench(t, kd[0], kd[1])
			var lat [3][]time.Duration
			for k := range lat {
				g.round(t, k, d/5) // warm-up
			}
			for range 5 {
				for k := range lat {
					lat[k] = append(lat[k], g.round(t, k, d)...)
				}
			}
			p := func(k int) (time.Duration, float64) {
				return medianLatency(lat[k]), float64(len(lat[k])) / (5 * d.Seconds())
			}
			pp, pr := p(plainTx)
			gp, gr := p(guardedTx)
			tp, tr := p(twoTx)
			t.Logf("RESULT %s: unguarded p50 %v (%.0f tx/s), guarded p50 %v (%.0f tx/s), latency ratio %.2f; "+
				"two-table unguarded p50 %v (%.0f tx/s), guarded/two-table %.2f",
				name, pp, pr, gp, gr, float64(gp)/float64(pp), tp, tr, float64(gp)/float64(tp))
		})
	}
}

func medianLatency(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func BenchmarkGuard(b *testing.B) {
	for name, kd := range guardKinds() {
		g := newGuardBench(b, kd[0], kd[1])
		for kind, label := range []string{"plain", "guarded", "two-table"} {
			b.Run(fmt.Sprintf("%s/%s", name, label), func(b *testing.B) {
				for b.Loop() {
					if err := g.tx(context.Background(), kind); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
