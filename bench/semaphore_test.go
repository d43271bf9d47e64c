package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// TestSemaphoreCost measures a semaphore's acquire+release cycle against
// the mutex's (GetLock+Release of one name), one goroutine, uncontended,
// at n = 1, 8 and 64 slots: with every slot free, and with n-1 of them
// held (the acquisition then reads n-1 live rows and must find the one
// free slot). Rounds interleave the two so that a shared machine's
// drift hits both; the ratio reported is the median of the rounds'.
// LOCKMGR_BENCH_SEMAPHORE=1 runs it at full length (9 rounds of 400
// cycles), otherwise briefly.
//
//	cd bench && LOCKMGR_BENCH_SEMAPHORE=1 go test -run TestSemaphoreCost -v .
func TestSemaphoreCost(t *testing.T) {
	rounds, cycles := 2, 30
	if os.Getenv("LOCKMGR_BENCH_SEMAPHORE") != "" {
		rounds, cycles = 9, 400
	}
	dsns := map[string]string{dbSQLite: sqliteDSN(filepath.Join(t.TempDir(), "sem.db")),
		dbPostgres: os.Getenv("LOCKMGR_TEST_POSTGRES_DSN"), dbMySQL: os.Getenv("LOCKMGR_TEST_MYSQL_DSN")}
	for _, kind := range testKinds() {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			tg, err := openTarget(ctx, kind, dsns[kind], 4)
			require.NoError(t, err)
			defer tg.close()
			table := "bench_sem_" + randomSuffix()
			m, err := lockmgr.New(tg.gdb, lockmgr.WithTable(table))
			require.NoError(t, err)
			require.NoError(t, m.AutoMigrate(ctx))
			defer func() { _ = tg.gdb.Migrator().DropTable(table, table+"_fence") }()
			mutex := func() error { return mutexCycle(ctx, m) }
			for _, n := range []int{1, 8, 64} {
				for _, full := range []bool{false, true} {
					if full && n == 1 {
						continue
					}
					sem, held := semFixture(t, ctx, m, n, full)
					ratio, semCycle, mutexCycle := interleave(t, rounds, cycles, func() error { return semCycle(ctx, sem) }, mutex)
					t.Logf("RESULT %s n=%d held=%d: semaphore cycle %v, mutex cycle %v, ratio %.2f×",
						kind, n, held, semCycle, mutexCycle, ratio)
				}
			}
		})
	}
}

// semFixture is a semaphore of n slots, with n-1 of them held if full.
func semFixture(t *testing.T, ctx context.Context, m *lockmgr.Manager, n int, full bool) (*lockmgr.Semaphore, int) {
	sem, err := lockmgr.NewSemaphore(m, "bench-sem-"+strconv.Itoa(n), n)
	require.NoError(t, err)
	held := 0
	for ; full && held < n-1; held++ {
		_, err := sem.Acquire(ctx, lockmgr.Expires(time.Hour))
		require.NoError(t, err)
	}
	return sem, held
}

func semCycle(ctx context.Context, s *lockmgr.Semaphore) error {
	l, err := s.Acquire(ctx)
	if err != nil {
		return err
	}
	return s.Release(ctx, l)
}

func mutexCycle(ctx context.Context, m *lockmgr.Manager) error {
	l, err := m.GetLock(ctx, "bench-mutex")
	if err != nil {
		return err
	}
	return m.Release(ctx, l)
}

// interleave times cycles of a and of b in alternating rounds and returns
// the median of the rounds' a÷b ratios and the median cycle of each.
func interleave(t *testing.T, rounds, cycles int, a, b func() error) (ratio float64, ca, cb time.Duration) {
	var ratios []float64
	var as, bs []time.Duration
	for range rounds {
		da, db := timeCycles(t, cycles, a), timeCycles(t, cycles, b)
		ratios, as, bs = append(ratios, float64(da)/float64(db)), append(as, da), append(bs, db)
	}
	return median(ratios), medianDur(as), medianDur(bs)
}

func timeCycles(t *testing.T, cycles int, f func() error) time.Duration {
	start := time.Now()
	for range cycles {
		if err := f(); err != nil {
			require.NoError(t, fmt.Errorf("cycle: %w", err))
		}
	}
	return time.Since(start) / time.Duration(cycles)
}
