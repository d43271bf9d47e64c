package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary serve as a hand-off worker process, as the
// bench program does.
func TestMain(m *testing.M) {
	if isWorker() {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// testConfig is every workload, briefly: a few seconds per database.
func testConfig(t *testing.T) *config {
	t.Helper()
	cfg, err := parseFlags([]string{
		"-rounds", "1", "-dur", "50ms", "-conc", "1,4", "-rows", "0,1000", "-setlock", "1,5",
		"-handoff-workers", "3", "-handoff-local", "3", "-handoff-dur", "500ms", "-soak", "2s", "-django-poll", "100ms",
		"-redis", os.Getenv("LOCKMGR_TEST_REDIS_ADDR"), "-sqlite-dir", t.TempDir(),
	}, io.Discard)
	require.NoError(t, err)
	return cfg
}

// testKinds are SQLite always, PostgreSQL and MariaDB when their DSNs are set.
func testKinds() []string {
	kinds := []string{dbSQLite}
	if os.Getenv("LOCKMGR_TEST_POSTGRES_DSN") != "" {
		kinds = append(kinds, dbPostgres)
	}
	if os.Getenv("LOCKMGR_TEST_MYSQL_DSN") != "" {
		kinds = append(kinds, dbMySQL)
	}
	return kinds
}

func TestWorkloads(t *testing.T) {
	cfg := testConfig(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res := newResults(cfg)
	for _, kind := range testKinds() {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
			defer cancel()
			suffix := randomSuffix()
			dr := runDB(ctx, cfg, kind, suffix, log)
			res.DBs = append(res.DBs, dr)
			require.Empty(t, dr.Skipped)
			assert.Empty(t, dr.Errors)
			assert.NotEmpty(t, dr.Version)

			wantLockers := 4 // lockmgr, floor, native, django-algo
			if kind == dbSQLite {
				wantLockers-- // no session locks
			}
			if kind == dbPostgres {
				wantLockers++ // lockmgr+pgnotify
			}
			if cfg.wantLocker(lkRedis) {
				wantLockers++
			}
			assert.Len(t, dr.Cycle, wantLockers*len(cfg.Concs), "one cell per locker and concurrency")
			for _, c := range dr.Cycle {
				n, first := c.errors()
				assert.Zerof(t, n, "%s ×%d: %s", c.Locker, c.Conc, first)
				assert.Positivef(t, c.Rounds[0].Ops, "%s ×%d did no cycle", c.Locker, c.Conc)
			}
			assert.Len(t, dr.SetLock, 3*len(cfg.SetSizes), "lockmgr, the floor, django-algo")
			for _, c := range dr.SetLock {
				n, first := c.errors()
				assert.Zerof(t, n, "SetLock %s ×%d: %s", c.Locker, c.Names, first)
				assert.GreaterOrEqual(t, c.Rounds[0].Ops, 3)
			}
			assert.Len(t, dr.Table, 4, "lockmgr and the floor, on an empty and a filled table")

			lockers := wantLockers - 1 // the floor cannot wait
			if cfg.wantLocker(lkRedis) {
				lockers-- // redislock's hand-off runs once per run, not per database
			}
			require.Len(t, dr.Handoff, 2*lockers, "in-process and cross-process per locker")
			for _, h := range dr.Handoff {
				assert.Zerof(t, h.Overlaps, "%s %s: two holders at once", h.Locker, h.Mode)
				assert.Zerof(t, h.Errors, "%s %s: %s", h.Locker, h.Mode, h.FirstErr)
				assert.Positivef(t, h.Holds, "%s %s: nobody held the lock", h.Locker, h.Mode)
				if h.Locker != lkDjango {
					assert.Positivef(t, h.Handoffs, "%s %s: the lock never changed hands", h.Locker, h.Mode)
				}
			}
			require.NotNil(t, dr.Soak)
			assert.Positive(t, dr.Soak.Ops)
			assert.Zero(t, dr.Soak.Errors, dr.Soak.FirstErr)
			assert.GreaterOrEqual(t, len(dr.Soak.Goroutines), 2)
			assertTablesDropped(t, kind, suffix, cfg)
		})
	}
	res.Finished = time.Now()
	dir := t.TempDir()
	require.NoError(t, writeResults(dir, res, true))
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	require.NoError(t, err)
	for _, s := range []string{"## Targets", "## 1. Uncontended cycle", "## 2. Contended hand-off",
		"## 3. Table size", "## 4. SetLock", "## 5. Steadiness", "| lockmgr | 1 |"} {
		assert.Contains(t, string(md), s)
	}
	readme := filepath.Join(dir, "README.md")
	require.NoError(t, os.WriteFile(readme, []byte("# x\n"+readmeBegin+"\nold\n"+readmeEnd+"\ntail\n"), 0o644))
	require.NoError(t, writeReadme(readme, res))
	rd, err := os.ReadFile(readme)
	require.NoError(t, err)
	assert.Contains(t, string(rd), "lockmgr's cycle cost ÷ the floor's")
	assert.NotContains(t, string(rd), "old")
	assert.True(t, strings.HasSuffix(string(rd), readmeEnd+"\ntail\n"))

	png, err := os.Stat(filepath.Join(dir, "cycle.png"))
	require.NoError(t, err)
	assert.Positive(t, png.Size())
}

// assertTablesDropped checks that runDB left no table of its run behind.
func assertTablesDropped(t *testing.T, kind, suffix string, cfg *config) {
	t.Helper()
	if kind == dbSQLite {
		entries, err := os.ReadDir(cfg.SQLiteDir)
		require.NoError(t, err)
		assert.Empty(t, entries, "the SQLite files are removed")
		return
	}
	dsn := map[string]string{dbPostgres: cfg.PGDSN, dbMySQL: cfg.MySQLDSN}[kind]
	tg, err := openTarget(context.Background(), kind, dsn, 1)
	require.NoError(t, err)
	defer tg.close()
	var n int
	require.NoError(t, tg.sqlDB.QueryRow(tg.rebind(`SELECT COUNT(*) FROM information_schema.tables
		WHERE table_name LIKE ?`), "bench\\_%\\_"+suffix).Scan(&n))
	assert.Zero(t, n, "this run's tables are dropped")
}

func TestAnalyzeHandoff(t *testing.T) {
	ms := int64(time.Millisecond)
	outs := []workerOut{
		{Holds: []hold{{0, 0, 1 * ms}, {0, 2 * ms, 3 * ms}}},
		{Holds: []hold{{1, 5 * ms, 6 * ms}}},
		{},
	}
	h := analyzeHandoff(outs, 3)
	assert.Equal(t, 3, h.Holds)
	assert.Equal(t, 1, h.Handoffs, "0→0 is a self re-acquire, 0→1 a hand-off")
	assert.Equal(t, 2*time.Millisecond, h.GapP50)
	assert.Equal(t, []int{2, 1, 0}, h.PerWorker)
	assert.Equal(t, 1, h.Starved)
	assert.InDelta(t, 0.5, h.SelfShare, 1e-9)
	assert.Zero(t, h.Overlaps)

	overlap := analyzeHandoff([]workerOut{{Holds: []hold{{0, 0, 4 * ms}}}, {Holds: []hold{{1, 2 * ms, 3 * ms}}}}, 2)
	assert.Equal(t, 1, overlap.Overlaps)
}

func TestStats(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, time.Duration(5), percentile(d, 50))
	assert.Equal(t, time.Duration(10), percentile(d, 99))
	assert.InDelta(t, 2.5, median([]float64{4, 1, 3, 2}), 1e-9)
	assert.InDelta(t, 1.0, jain([]int{5, 5, 5}), 1e-9)
	assert.InDelta(t, 1.0/3, jain([]int{9, 0, 0}), 1e-9)
	a := &cell{Rounds: []roundStat{{OpsPerSec: 100}, {OpsPerSec: 50}, {OpsPerSec: 80}}}
	base := &cell{Rounds: []roundStat{{OpsPerSec: 120}, {OpsPerSec: 100}, {OpsPerSec: 80}}}
	assert.InDelta(t, 1.2, costRatio(a, base), 1e-9, "median of 1.2, 2.0, 1.0")
	assert.Equal(t, []int{3, 1, 2}, rotate([]int{1, 2, 3}, 2))
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-db", "pg,sqlite", "-rounds", "7"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []string{dbPostgres, dbSQLite}, cfg.DBs)
	assert.Equal(t, 7, cfg.Rounds, "an explicit flag wins over -quick")
	assert.Equal(t, 200*time.Millisecond, cfg.Dur, "-quick shortens rounds")
	assert.Equal(t, []int{0, 100000}, cfg.TableRows)

	cfg, err = parseFlags([]string{"-redis", ""}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, allKinds, cfg.DBs)
	assert.NotContains(t, cfg.Lockers, lkRedis)
	assert.True(t, strings.HasPrefix(cfg.Command, "go run ."))

	_, err = parseFlags([]string{"-db", "oracle"}, io.Discard)
	assert.Error(t, err)
}
