package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// envPgBouncer names a PgBouncer in transaction pooling mode in front of
// the test PostgreSQL (.ci/engines/pgbouncer.sh starts one; CI sets it).
const envPgBouncer = "LOCKMGR_TEST_PGBOUNCER_DSN"

// poolerDSN returns the PgBouncer DSN, or skips the test.
func poolerDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(envPgBouncer)
	if dsn == "" {
		t.Skip(envPgBouncer + " is not set: start one with .ci/engines/pgbouncer.sh (CI does)")
	}
	return dsn
}

// withParam returns dsn (a URL) with the query parameter key set to value.
func withParam(t *testing.T, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err, "%s must be a postgres:// URL", envPgBouncer)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// poolerCycles is how many cycles each workload goroutine runs:
// LOCKMGR_POOLER_CYCLES, or 300 (the run) under
// LOCKMGR_TORTURE=long, else 30.
func poolerCycles() int {
	if n, err := strconv.Atoi(os.Getenv("LOCKMGR_POOLER_CYCLES")); err == nil && n > 0 {
		return n
	}
	if tortureMode() == "long" {
		return 300
	}
	return 30
}

// TestPoolerWorkload runs the mixed workload of every lock call through a
// transaction-pooling PgBouncer with each pgx exec mode a pooler user is
// told to use, with and without GORM's PrepareStmt: no call may fail and
// no two holders may overlap.
func TestPoolerWorkload(t *testing.T) {
	dsn := poolerDSN(t)
	modes, appPool := []string{"simple_protocol", "exec", "cache_describe"}, 20
	// For measurements: other exec modes (e.g. cache_statement, pgx's
	// default, which fails behind a transaction pooler whatever lockmgr
	// does) and another application pool size (≤ the pooler's for session
	// pooling).
	if s := os.Getenv("LOCKMGR_POOLER_MODES"); s != "" {
		modes = strings.Split(s, ",")
	}
	if n, err := strconv.Atoi(os.Getenv("LOCKMGR_POOLER_APP_POOL")); err == nil && n > 0 {
		appPool = n
	}
	for _, mode := range modes {
		for _, prep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PrepareStmt=%v", mode, prep), func(t *testing.T) {
				db, err := gorm.Open(postgres.Open(withParam(t, dsn, "default_query_exec_mode", mode)),
					&gorm.Config{Logger: logger.Discard, PrepareStmt: prep})
				require.NoError(t, err)
				sqlDB, err := db.DB()
				require.NoError(t, err)
				sqlDB.SetMaxOpenConns(appPool) // by default more clients than the pooler's 5 server connections
				t.Cleanup(func() { _ = sqlDB.Close() })
				m := newManager(t, db, tableName("pool"))
				res := runPoolerWorkload(t.Context(), m, 16, poolerCycles())
				report(t, "pooler", map[string]any{"exec_mode": mode, "prepare_stmt": prep, "cycles": res.cycles,
					"locks": res.locks, "errors_by_call": res.byCall(), "errors": res.errors, "overlaps": len(res.overlaps)})
				assert.Empty(t, res.errors, "no call fails through the pooler")
				assert.Empty(t, res.overlaps)
				assert.Equal(t, res.cycles, res.locks, "every cycle takes its lock")
			})
		}
	}
}

// poolerResult tallies one workload run.
type poolerResult struct {
	cycles, locks int
	errors        map[string]int // error text → count
	overlaps      []string
}

// runPoolerWorkload runs workers goroutines × cycles of GetLock, IsLocked,
// Renew, Release, Do and SetLock, with List every 10 cycles and CleanLocks
// every 100, over four names the goroutines contend for.
func runPoolerWorkload(ctx context.Context, m *lockmgr.Manager, workers, cycles int) poolerResult {
	w := &poolerWorker{m: m, led: newLedger(), errs: map[string]int{}}
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for j := range cycles {
				w.cycle(ctx, g, j)
			}
		})
	}
	wg.Wait()
	_, _, overlaps := w.led.snapshot()
	return poolerResult{cycles: workers * cycles, locks: w.locks, errors: w.errs, overlaps: overlaps}
}

// byCall sums the errors by the call that met them.
func (r poolerResult) byCall() map[string]int {
	out := map[string]int{}
	for k, n := range r.errors {
		out[strings.SplitN(k, ":", 2)[0]] += n
	}
	return out
}

type poolerWorker struct {
	m     *lockmgr.Manager
	led   *ledger
	mu    sync.Mutex
	locks int
	errs  map[string]int
}

func (w *poolerWorker) fail(what string, err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs[what+": "+short(err.Error())]++
}

var poolerOpts = []lockmgr.LockOption{lockmgr.Wait(time.Minute), lockmgr.Expires(time.Minute)}

// cycle is one cycle of goroutine g.
func (w *poolerWorker) cycle(ctx context.Context, g, j int) {
	name := fmt.Sprintf("pool-%d", (g+j)%4)
	w.hold(ctx, g, name)
	err := w.m.Do(ctx, name+"-do", func(ctx context.Context, s *lockmgr.Scope) error {
		h := w.led.begin(name+"-do", fmt.Sprint("g", g), s.Main().Fence)
		defer w.led.end(h, false)
		_, err := w.m.IsLocked(ctx, name+"-do")
		return err
	}, poolerOpts...)
	w.fail("Do", err)
	_, err = w.m.SetLock(ctx, []string{fmt.Sprintf("set-%d-a", g), fmt.Sprintf("set-%d-b", g)}, lockmgr.Expires(time.Minute))
	w.fail("SetLock", err)
	if j%10 == 0 {
		_, err = w.m.List(ctx)
		w.fail("List", err)
	}
	if j%100 == 0 {
		_, err = w.m.CleanLocks(ctx)
		w.fail("CleanLocks", err)
	}
}

// hold takes name, checks and renews it, and releases it.
func (w *poolerWorker) hold(ctx context.Context, g int, name string) {
	l, err := w.m.GetLock(ctx, name, poolerOpts...)
	if err != nil {
		w.fail("GetLock", err)
		return
	}
	w.mu.Lock()
	w.locks++
	w.mu.Unlock()
	h := w.led.begin(name, fmt.Sprint("g", g), l.Fence)
	locked, err := w.m.IsLocked(ctx, name)
	w.fail("IsLocked", err)
	if err == nil && !locked {
		w.fail("IsLocked", errors.New("false while held"))
	}
	_, err = w.m.Renew(ctx, l, lockmgr.Expires(time.Minute))
	w.fail("Renew", err)
	w.led.end(h, false)
	w.fail("Release", w.m.Release(ctx, l))
}

// TestPrepareStmtSession: a *gorm.DB with GORM's PrepareStmt, and a
// transaction of one under WithTx, run every kind of lock call on every
// database. lockmgr's statements run on the pool under GORM's statement
// cache, which is what keeps them working behind a transaction pooler.
// (Here, not in the root package: GORM's PrepareStmt starts a goroutine
// that never stops, which the root package's goleak check would report.)
func TestPrepareStmtSession(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		db := mustOpen(t, tg).Session(&gorm.Session{PrepareStmt: true})
		m := newManager(t, db, tableName(tg.Name))
		ctx := t.Context()
		w := &poolerWorker{m: m, led: newLedger(), errs: map[string]int{}}
		for j := range 3 {
			w.cycle(ctx, 0, j*10)
		}
		assert.Empty(t, w.errs)
		assert.Equal(t, 3, w.locks)
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			in := m.WithTx(tx)
			l, err := in.GetLock(ctx, "in-tx")
			if err != nil {
				return err
			}
			if _, err := in.RenewLock(ctx, "in-tx"); err != nil {
				return err
			}
			return in.Release(ctx, l)
		}))
	})
}
