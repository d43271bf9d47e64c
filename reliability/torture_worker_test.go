package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// tortureConfig is what one torture worker process is told.
type tortureConfig struct {
	Driver, DSN                     string
	LockTable, OccTable, AuditTable string
	Names                           []string
	Goroutines                      int
	Duration                        time.Duration
	ScopeExpiry                     time.Duration
	Seed                            int64
	Proc                            int
	OutFile                         string
	// NodeDSNs, when set, are the nodes of a cluster (galera_test.go):
	// lock calls go to node Proc % len, or with Spread each statement to a
	// random node; the harness's own tables stay on DSN.
	NodeDSNs []string
	Spread   bool
}

// tortureStats is what a worker process reports back.
type tortureStats struct {
	Holds         int64            // holds recorded in the audit table
	ByKind        map[string]int64 // holds per way of locking: get, scope, do
	Locked        int64            // ErrLocked answers (the only expected error)
	Lost          int64            // scopes lost during a hold
	LiveOverlaps  int64            // occupancy found taken by another holder
	LiveFenceBack int64            // occupancy free but holding a higher fence
	Violations    []string         // the first of those, described
	Unexpected    map[string]int64 // any other error, by message
	Harness       map[string]int64 // the harness's own statements failing
}

// statsBox guards a tortureStats shared by a process's goroutines.
type statsBox struct {
	mu sync.Mutex
	s  tortureStats
}

func newStatsBox() *statsBox {
	return &statsBox{s: tortureStats{
		ByKind: map[string]int64{}, Unexpected: map[string]int64{}, Harness: map[string]int64{},
	}}
}

func (b *statsBox) update(fn func(s *tortureStats)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(&b.s)
}

// lockErr tallies an error from a lockmgr call: ErrLocked is expected.
func (b *statsBox) lockErr(op string, err error) {
	b.update(func(s *tortureStats) {
		if errors.Is(err, lockmgr.ErrLocked) {
			s.Locked++
			return
		}
		s.Unexpected[op+": "+short(err.Error())]++
	})
}

func (b *statsBox) harnessErr(op string, err error) {
	b.update(func(s *tortureStats) { s.Harness[op+": "+short(err.Error())]++ })
}

func (b *statsBox) violation(overlap bool, msg string) {
	b.update(func(s *tortureStats) {
		if overlap {
			s.LiveOverlaps++
		} else {
			s.LiveFenceBack++
		}
		if len(s.Violations) < 50 {
			s.Violations = append(s.Violations, msg)
		}
	})
}

// runTortureChild is the torture worker process: it contends for the
// names until the duration ends and writes its stats to cfg.OutFile.
func runTortureChild(raw string) int {
	var cfg tortureConfig
	if err := decodeConfig(raw, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	db, err := openDB(cfg.Driver, cfg.DSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.SetMaxOpenConns(cfg.Goroutines + 2)
		defer sqlDB.Close()
	}
	lockDB, err := openLockDB(cfg, db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m, err := lockmgr.New(lockDB, lockmgr.WithTable(cfg.LockTable))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	box := newStatsBox()
	runTortureLoad(db, m, cfg, box)
	out, err := json.Marshal(box.s)
	if err == nil {
		err = os.WriteFile(cfg.OutFile, out, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// runTortureLoad runs cfg.Goroutines holders until cfg.Duration passes.
func runTortureLoad(db *gorm.DB, m *lockmgr.Manager, cfg tortureConfig, box *statsBox) {
	deadline := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	for g := 0; g < cfg.Goroutines; g++ {
		w := &tortureWorker{
			db: db, m: m, cfg: cfg, box: box,
			id:  fmt.Sprintf("p%d-g%d", cfg.Proc, g),
			rng: rand.New(rand.NewSource(cfg.Seed + int64(g)*7919)),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				w.once()
			}
		}()
	}
	wg.Wait()
}

// tortureWorker is one goroutine of a worker process.
type tortureWorker struct {
	db  *gorm.DB
	m   *lockmgr.Manager
	cfg tortureConfig
	box *statsBox
	id  string
	rng *rand.Rand
}

// opTimeout bounds every call, so a hang shows as an error, not a stall.
const opTimeout = time.Minute

// once takes one name by one of the three ways of locking and holds it.
func (w *tortureWorker) once() {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	name := w.cfg.Names[w.rng.Intn(len(w.cfg.Names))]
	switch r := w.rng.Intn(10); {
	case r < 4:
		w.getLock(ctx, name)
	case r < 8:
		w.acquire(ctx, name)
	default:
		w.do(ctx, name)
	}
}

func (w *tortureWorker) getLock(ctx context.Context, name string) {
	l, err := w.m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
	if err != nil {
		w.box.lockErr("GetLock", err)
		return
	}
	w.hold(ctx, name, l.Fence, "get", nil, w.holdTime(false))
	if err := w.m.Release(ctx, l); err != nil {
		w.box.lockErr("Release", err)
	}
}

func (w *tortureWorker) scopeOpts() []lockmgr.LockOption {
	opts := []lockmgr.LockOption{lockmgr.Expires(w.cfg.ScopeExpiry)}
	if w.rng.Intn(2) == 0 {
		opts = append(opts, lockmgr.Wait(time.Duration(1+w.rng.Intn(150))*time.Millisecond))
	}
	return opts
}

func (w *tortureWorker) acquire(ctx context.Context, name string) {
	s, err := w.m.Acquire(ctx, name, w.scopeOpts()...)
	if err != nil {
		w.box.lockErr("Acquire", err)
		return
	}
	lost := w.hold(ctx, name, s.Main().Fence, "scope", s.Context(), w.holdTime(true))
	if err := s.Close(); err != nil && !lost {
		w.box.lockErr("Scope.Close", err)
	}
}

func (w *tortureWorker) do(ctx context.Context, name string) {
	d := w.holdTime(true)
	var lost bool
	err := w.m.Do(ctx, name, func(sctx context.Context, s *lockmgr.Scope) error {
		lost = w.hold(ctx, name, s.Main().Fence, "do", sctx, d)
		return nil
	}, w.scopeOpts()...)
	if err != nil && !lost {
		w.box.lockErr("Do", err)
	}
}

// holdTime is mostly zero or a few milliseconds; now and then a scope is
// held past its expiry so that keep-alive renewals are exercised.
func (w *tortureWorker) holdTime(scope bool) time.Duration {
	switch r := w.rng.Intn(1000); {
	case r < 600:
		return 0
	case r < 950:
		return time.Duration(w.rng.Intn(2000)) * time.Microsecond
	case r < 997 || !scope:
		return time.Duration(w.rng.Intn(20)) * time.Millisecond
	default:
		return w.cfg.ScopeExpiry * 13 / 10
	}
}
