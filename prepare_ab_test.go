package lockmgr_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestPrepareAB measures whether lockmgr's own prepared statements pay, on
// every configured database (and MySQL with interpolateParams=true): IsLocked
// (one statement with arguments) and List (none), prepared and not, in
// interleaved rounds on one table. It asserts nothing; it logs the medians.
// LOCKMGR_PREPARE_AB=1 runs it.
func TestPrepareAB(t *testing.T) {
	if os.Getenv("LOCKMGR_PREPARE_AB") == "" {
		t.Skip("a measurement: set LOCKMGR_PREPARE_AB=1 to run it")
	}
	bs := backends()
	if dsn := os.Getenv(envMySQL); dsn != "" {
		bs = append(bs, backend{name: "mysql+interpolate", kind: "mysql", open: func(t testing.TB) *gorm.DB {
			return shared(t, "mysqli", mysql.Open(dsn+"&interpolateParams=true"))
		}})
	}
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			on, off := lockmgr.WithPreparation(e.m, true), lockmgr.WithPreparation(e.m, false)
			for _, wl := range []string{"islocked", "list"} {
				var ron, roff, ratio []float64
				for r := 0; r < 15; r++ {
					var a, c float64
					if r%2 == 0 {
						a, c = measure(on, wl), measure(off, wl)
					} else {
						c, a = measure(off, wl), measure(on, wl)
					}
					ron, roff, ratio = append(ron, a), append(roff, c), append(ratio, a/c)
				}
				t.Logf("%s %s: prepared %.0f/s, unprepared %.0f/s, prepared÷unprepared throughput %.2f (median of 15 interleaved 200ms rounds)",
					b.name, wl, med(ron), med(roff), med(ratio))
			}
		})
	}
}

func med(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// measure runs workload wl on m for 200 ms and returns calls per second.
func measure(m *lockmgr.Manager, wl string) float64 {
	ctx := context.Background()
	start, n := time.Now(), 0
	for time.Since(start) < 200*time.Millisecond {
		if wl == "islocked" {
			if _, err := m.IsLocked(ctx, fmt.Sprint("ab-", n%16)); err != nil {
				panic(err)
			}
		} else if _, err := m.List(ctx); err != nil {
			panic(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
