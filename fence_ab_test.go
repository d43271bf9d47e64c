package lockmgr_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/gormlock/lockmgr"
)

// TestFenceCostAB measures what the fence high-water mark costs a lock
// cycle on SQLite and MariaDB, where a trigger writes it on every
// acquisition: GetLock + Release of fresh names on a migrated table, and on
// one whose fence triggers were dropped, in interleaved 1 s rounds. The
// bench's floor writes no high-water mark, so this is the part of lockmgr's
// cycle ÷ floor that buys fences which grow past deleted rows. It asserts
// nothing; it logs the medians. LOCKMGR_FENCE_AB=1 runs it.
func TestFenceCostAB(t *testing.T) {
	if os.Getenv("LOCKMGR_FENCE_AB") == "" {
		t.Skip("a measurement: set LOCKMGR_FENCE_AB=1 to run it")
	}
	for _, b := range backends() {
		if b.dialect() == "postgres" || b.name == "tidb" {
			continue // no trigger: PostgreSQL's fence lock is in the statement, TiDB's in its transaction
		}
		t.Run(b.name, func(t *testing.T) {
			with := newEnv(t, b)
			without := newEnv(t, b)
			for _, tr := range []string{"_fence_bi", "_fence_insert", "_fence_update"} {
				must(t, without.db.Exec("DROP TRIGGER IF EXISTS "+without.table+tr).Error)
			}
			ctx := context.Background()
			round := func(m *lockmgr.Manager, r int) float64 {
				start, n := time.Now(), 0
				for ; time.Since(start) < time.Second; n++ {
					l, err := m.GetLock(ctx, fmt.Sprintf("ab-%d-%d", r, n))
					must(t, err)
					must(t, m.Release(ctx, l))
				}
				return float64(time.Since(start).Microseconds()) / float64(n)
			}
			var ws, wos, ratio []float64
			for r := range 9 {
				var a, c float64
				if r%2 == 0 {
					a, c = round(with.m, r), round(without.m, r)
				} else {
					c, a = round(without.m, r), round(with.m, r)
				}
				ws, wos, ratio = append(ws, a), append(wos, c), append(ratio, a/c)
			}
			t.Logf("cycle p50 of rounds: with the high-water mark %.0f µs, without %.0f µs; ratio %.2f×",
				median(ws), median(wos), median(ratio))
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
