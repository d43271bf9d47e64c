package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// tortureParams sizes the harness: P processes × G goroutines on K names.
type tortureParams struct {
	Procs, Goroutines, Names int
	Duration, ScopeExpiry    time.Duration
}

func currentTortureParams() tortureParams {
	p := tortureParams{Procs: 3, Goroutines: 4, Names: 4, Duration: tortureDuration(), ScopeExpiry: 2 * time.Second}
	switch tortureMode() {
	case "":
		p.Procs, p.Goroutines, p.Names = 2, 3, 3
	case "long":
		p.Procs, p.Goroutines, p.Names = 4, 5, 6
	}
	return p
}

// TestTortureMutualExclusion runs P worker processes × G goroutines that
// contend for K names by GetLock, Acquire and Do. Every hold flips an
// occupancy row that must be free and appends to an audit table; the
// checker then proves that no two holds of a name overlapped, that fences
// grew in hold order, that no scope was lost and that the only error seen
// was ErrLocked.
func TestTortureMutualExclusion(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) { tortureAndCheck(t, tg, currentTortureParams(), nil) })
}

// TestTortureTiDB runs the same harness against a TiDB server when
// LOCKMGR_TEST_TIDB_DSN names one (CI starts one: .ci/engines/tidb.sh).
func TestTortureTiDB(t *testing.T) {
	tortureAndCheck(t, tidbTarget(t), currentTortureParams(), nil)
}

// tidbTarget is the TiDB server LOCKMGR_TEST_TIDB_DSN names; the test is
// skipped without one. TiDB is not in configuredTargets: only the tests
// that call this run against it.
func tidbTarget(t *testing.T) target {
	dsn := os.Getenv("LOCKMGR_TEST_TIDB_DSN")
	if dsn == "" {
		t.Skip("set LOCKMGR_TEST_TIDB_DSN to run this against TiDB")
	}
	return target{Name: "tidb", Driver: "mysql", DSN: dsn}
}

// tortureAndCheck runs the torture harness on tg, adjusted by setup if
// given, and asserts what TestTortureMutualExclusion promises.
func tortureAndCheck(t *testing.T, tg target, p tortureParams, setup func(*tortureConfig)) {
	t.Helper()
	db := mustOpen(t, tg)
	lockT, occT, auditT := tableName("lock"), tableName("occ"), tableName("audit")
	m := newManager(t, db, lockT)
	names := make([]string, p.Names)
	for i := range names {
		names[i] = fmt.Sprintf("torture-%d", i)
	}
	require.NoError(t, createAuditTables(db, occT, auditT, names))
	dropTables(t, db, occT, auditT)

	cfg := tortureConfig{
		Driver: tg.Driver, DSN: tg.DSN, LockTable: lockT, OccTable: occT, AuditTable: auditT,
		Names: names, Goroutines: p.Goroutines, Duration: p.Duration, ScopeExpiry: p.ScopeExpiry,
	}
	if setup != nil {
		setup(&cfg)
	}
	started := time.Now()
	stats := runTortureProcs(t, tg, p, cfg)
	elapsed := time.Since(started)
	rep, err := checkAudit(db, auditT)
	require.NoError(t, err)
	stillHeld := heldNames(t, m, names)
	busyOcc := countBusyOcc(t, db, occT)

	report(t, "torture", map[string]any{
		"db": tg.Name, "procs": p.Procs, "goroutines": p.Goroutines, "names": p.Names,
		"seconds": elapsed.Seconds(), "holds": rep.Holds, "holds_per_s": float64(rep.Holds) / elapsed.Seconds(),
		"by_kind": stats.ByKind, "locked_answers": stats.Locked, "overlaps": rep.Overlaps,
		"fence_backwards": rep.FenceBackwards, "lost": stats.Lost, "live_overlaps": stats.LiveOverlaps, "live_fence_backwards": stats.LiveFenceBack,
		"unexpected_errors": stats.Unexpected, "harness_errors": stats.Harness,
	})
	assert.Zero(t, rep.Overlaps, "holds of one name overlapped: %v", rep.Examples)
	assert.Zero(t, rep.FenceBackwards, "fences did not grow in hold order: %v", rep.Examples)
	assert.Zero(t, stats.LiveOverlaps, "occupancy taken by another holder, seen live: %v", stats.Violations)
	assert.Zero(t, stats.LiveFenceBack, "fence lower than the previous hold's, seen live: %v", stats.Violations)
	assert.Zero(t, stats.Lost, "scopes lost without any fault")
	assert.Empty(t, stats.Unexpected, "errors other than ErrLocked")
	assert.Empty(t, stats.Harness, "the harness's own statements failed")
	assert.Equal(t, int(stats.Holds), rep.Holds, "holds reported by workers vs audit rows")
	assert.Empty(t, stillHeld, "names still locked after every holder released")
	assert.Zero(t, busyOcc, "occupancy rows still taken after the run")
	assert.Positive(t, rep.Holds)
	assert.Positive(t, stats.Locked, "no contention: the harness did not test anything")
}

// runTortureProcs starts p.Procs workers and sums their stats.
func runTortureProcs(t *testing.T, tg target, p tortureParams, base tortureConfig) tortureStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.Duration+3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	children := make([]*child, p.Procs)
	for i := range children {
		cfg := base
		cfg.Proc = i
		cfg.Seed = time.Now().UnixNano() + int64(i)*1_000_003
		cfg.OutFile = filepath.Join(dir, fmt.Sprintf("proc-%d.json", i))
		children[i] = startChild(ctx, t, "torture", cfg)
	}
	total := tortureStats{ByKind: map[string]int64{}, Unexpected: map[string]int64{}, Harness: map[string]int64{}}
	for i, c := range children {
		_, _ = io.Copy(io.Discard, c.stdout)
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("%s worker %d: %v\n%s", tg.Name, i, err, c.stderr.String())
		}
		raw, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("proc-%d.json", i)))
		require.NoError(t, err)
		var s tortureStats
		require.NoError(t, json.Unmarshal(raw, &s))
		addStats(&total, s)
	}
	return total
}

func addStats(total *tortureStats, s tortureStats) {
	total.Holds += s.Holds
	total.Locked += s.Locked
	total.Lost += s.Lost
	total.LiveOverlaps += s.LiveOverlaps
	total.LiveFenceBack += s.LiveFenceBack
	total.Violations = append(total.Violations, s.Violations...)
	for k, v := range s.ByKind {
		total.ByKind[k] += v
	}
	for k, v := range s.Unexpected {
		total.Unexpected[k] += v
	}
	for k, v := range s.Harness {
		total.Harness[k] += v
	}
}

// heldNames returns the names IsLocked still reports as held.
func heldNames(t *testing.T, m *lockmgr.Manager, names []string) []string {
	t.Helper()
	var held []string
	for _, n := range names {
		ok, err := m.IsLocked(context.Background(), n)
		require.NoError(t, err)
		if ok {
			held = append(held, n)
		}
	}
	return held
}

// countBusyOcc counts occupancy rows that a holder never gave back.
func countBusyOcc(t *testing.T, db *gorm.DB, occ string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Table(occ).Where("holder <> ''").Count(&n).Error)
	return n
}
