package lockmgr_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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
			// round runs conc goroutines of cycles for 1 s and returns the
			// time per cycle, in µs of wall time × goroutines.
			round := func(m *lockmgr.Manager, conc, r int) float64 {
				var wg sync.WaitGroup
				var total atomic.Int64
				start := time.Now()
				for g := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n := 0; time.Since(start) < time.Second; n++ {
							l, err := m.GetLock(ctx, fmt.Sprintf("ab-%d-%d-%d", r, g, n))
							if err == nil {
								err = m.Release(ctx, l)
							}
							if err != nil {
								t.Error(err)
								return
							}
							total.Add(1)
						}
					}()
				}
				wg.Wait()
				return float64(time.Since(start).Microseconds()) * float64(conc) / float64(max(total.Load(), 1))
			}
			for _, conc := range []int{1, 8} {
				var ws, wos, ratio []float64
				for r := range 9 {
					var a, c float64
					if r%2 == 0 {
						a, c = round(with.m, conc, r), round(without.m, conc, r)
					} else {
						c, a = round(without.m, conc, r), round(with.m, conc, r)
					}
					ws, wos, ratio = append(ws, a), append(wos, c), append(ratio, a/c)
				}
				t.Logf("%d goroutine(s), cycle of rounds' medians: with the high-water mark %.0f µs, without %.0f µs; ratio %.2f×",
					conc, median(ws), median(wos), median(ratio))
			}
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
