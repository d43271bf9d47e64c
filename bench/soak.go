package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormlock/lockmgr"
)

// soakResult is the steadiness check: goroutines and live heap sampled every
// second while lockmgr runs a mixed load.
type soakResult struct {
	Locker          string        `json:"locker"`
	Duration        time.Duration `json:"duration_ns"`
	Ops             int64         `json:"ops"`
	Errors          int64         `json:"errors"`
	FirstErr        string        `json:"first_error,omitempty"`
	GoroutinesIdle  int           `json:"goroutines_idle"`  // before the load
	GoroutinesAfter int           `json:"goroutines_after"` // 1 s after the load stopped
	Goroutines      []int         `json:"goroutines"`       // per second under load
	HeapKiB         []int         `json:"heap_kib"`         // live heap after GC, per second
}

// steady reports whether goroutines and heap stayed flat: the last third
// of the run peaks no higher than the first third (plus slack for
// goroutines mid-flight), the live heap's median grows by at most 20 % or
// 1 MiB, and after the load the goroutines are back to the idle count.
func (s *soakResult) steady() (goroutines, heap bool) {
	n := len(s.Goroutines)
	if n < 3 {
		return false, false
	}
	third := max(n/3, 1)
	// Medians, not maxima: mattn/go-sqlite3 runs a goroutine per statement
	// to watch its context, so a sample taken mid-burst spikes. A leak shows
	// as a rising median, and as a count that does not return to idle.
	firstG, lastG := medianInts(s.Goroutines[:third]), medianInts(s.Goroutines[n-third:])
	goroutines = lastG <= firstG+4 && s.GoroutinesAfter <= s.GoroutinesIdle+2
	fh, lh := medianInts(s.HeapKiB[:third]), medianInts(s.HeapKiB[n-third:])
	heap = lh <= fh*1.2 || lh-fh <= 1024
	return goroutines, heap
}

// soak runs lockmgr for cfg.SoakDur with: 4 goroutines cycling distinct
// names, 4 waiting (Wait) for one shared name, 2 running scopes (Do) whose
// keep-alive renews while they sleep.
func (r *runner) soak(ctx context.Context) error {
	res := &soakResult{Duration: r.cfg.SoakDur}
	// With pgnotify where there is one: more moving parts to leak.
	lk, ok := r.lockers[lkNotify].(*lockmgrLocker)
	if !ok {
		lk, ok = r.lockers[lkLockmgr].(*lockmgrLocker)
	}
	if !ok {
		return nil
	}
	res.Locker = lk.label()
	r.res.Soak = res
	r.log.Info("workload: steadiness (soak)", "locker", lk.label(), "dur", r.cfg.SoakDur)
	m := lk.m
	// Both counts are taken with one idle connection in the pool: drivers
	// keep a goroutine per open connection (go-sql-driver's watcher), and
	// a pool that kept the load's connections is not a leak.
	r.shrinkPools()
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	res.GoroutinesIdle = runtime.NumGoroutine()

	var ops, nerr atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if err != nil && !errors.Is(err, lockmgr.ErrLocked) && !errors.Is(err, context.Canceled) {
			nerr.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
	}
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	spawn := func(n int, f func(g int)) {
		for g := range n {
			wg.Add(1)
			go func() { defer wg.Done(); f(g) }()
		}
	}
	spawn(4, func(g int) { // uncontended cycle
		for i := 0; lctx.Err() == nil; i++ {
			l, err := m.GetLock(lctx, "soak-c-"+strconv.Itoa(g)+"-"+strconv.Itoa(i), lockmgr.Expires(r.cfg.TTL))
			if err == nil {
				err = m.Release(lctx, l)
				ops.Add(1)
			}
			fail(err)
		}
	})
	spawn(4, func(int) { // contended waiters
		for lctx.Err() == nil {
			l, err := m.GetLock(lctx, "soak-shared", lockmgr.Expires(r.cfg.TTL), lockmgr.Wait(200*time.Millisecond))
			if err == nil {
				time.Sleep(time.Millisecond)
				err = m.Release(context.WithoutCancel(lctx), l)
				ops.Add(1)
			}
			fail(err)
		}
	})
	spawn(2, func(g int) { // scopes with keep-alive (Expires 1.5 s: renewed every 0.5 s)
		for i := 0; lctx.Err() == nil; i++ {
			err := m.Do(lctx, "soak-scope-"+strconv.Itoa(g), func(ctx context.Context, _ *lockmgr.Scope) error {
				t := time.NewTimer(time.Duration(rand.Int64N(int64(1200 * time.Millisecond))))
				defer t.Stop()
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				return nil
			}, lockmgr.Expires(1500*time.Millisecond))
			if err == nil {
				ops.Add(1)
			}
			fail(err)
		}
	})

	tick := time.NewTicker(time.Second)
	deadline := time.Now().Add(r.cfg.SoakDur)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		<-tick.C
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		res.Goroutines = append(res.Goroutines, runtime.NumGoroutine())
		res.HeapKiB = append(res.HeapKiB, int(ms.HeapAlloc/1024))
	}
	tick.Stop()
	stop()
	wg.Wait()
	r.shrinkPools()
	time.Sleep(time.Second)
	runtime.GC()
	res.GoroutinesAfter = runtime.NumGoroutine()
	res.Ops, res.Errors = ops.Load(), nerr.Load()
	if v, ok := firstErr.Load().(string); ok {
		res.FirstErr = v
	}
	g, h := res.steady()
	r.log.Info("soak", "ops", res.Ops, "errors", res.Errors, "goroutines", fmt.Sprint(res.Goroutines), "steady goroutines", g, "steady heap", h)
	return r.clearAll(ctx)
}

func medianInts(v []int) float64 {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return median(f)
}
