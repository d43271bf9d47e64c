package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// roundStat is one timed run of one locker at one setting.
type roundStat struct {
	Ops       int           `json:"ops"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	OpsPerSec float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Errors    int           `json:"errors"`
	FirstErr  string        `json:"first_error,omitempty"`
}

// opFunc is one timed operation of goroutine g, its i-th.
type opFunc func(ctx context.Context, s session, g, i int) error

// measure runs op on conc goroutines, each with its own session, until dur
// has passed and each goroutine has done at least minOps operations.
// Throughput is operations over the time until the last goroutine finished.
func measure(ctx context.Context, lk locker, conc int, dur time.Duration, minOps int, op opFunc) (roundStat, error) {
	sessions := make([]session, conc)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				_ = s.close()
			}
		}
	}()
	for g := range sessions {
		s, err := lk.session(ctx)
		if err != nil {
			return roundStat{}, err
		}
		sessions[g] = s
	}
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	nerr := make([]int, conc)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1024)
			for i := 0; ctx.Err() == nil && (time.Now().Before(deadline) || i < minOps); i++ {
				t0 := time.Now()
				if err := op(ctx, sessions[g], g, i); err != nil {
					nerr[g]++
					if errs[g] == nil {
						errs[g] = err
					}
					if nerr[g] > 100 { // a broken locker: stop hammering
						break
					}
					continue
				}
				l = append(l, time.Since(t0))
			}
			lat[g] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	st := roundStat{Ops: len(all), Elapsed: elapsed, OpsPerSec: float64(len(all)) / elapsed.Seconds(),
		P50: percentile(all, 50), P99: percentile(all, 99)}
	for g := range conc {
		st.Errors += nerr[g]
		if st.FirstErr == "" && errs[g] != nil {
			st.FirstErr = errs[g].Error()
		}
	}
	return st, ctx.Err()
}

// cycleOp acquires and releases a name no other goroutine uses: the
// uncontended cycle. prefix keeps runs apart.
func cycleOp(prefix string, ttl time.Duration) opFunc {
	return func(ctx context.Context, s session, g, i int) error {
		name := prefix + strconv.Itoa(g) + "-" + strconv.Itoa(i)
		held, err := s.lock(ctx, name, ttl, 0)
		if err != nil {
			if errors.Is(err, errHeld) {
				return fmt.Errorf("uncontended name %q was held", name)
			}
			return err
		}
		return s.unlock(ctx, held)
	}
}

// setLockOp calls setLock with n fresh names.
func setLockOp(sl setLocker, prefix string, n int, ttl time.Duration) opFunc {
	return func(ctx context.Context, _ session, g, i int) error {
		names := make([]string, n)
		base := prefix + strconv.Itoa(g) + "-" + strconv.Itoa(i) + "-"
		for j := range names {
			names[j] = base + strconv.Itoa(j)
		}
		return sl.setLock(ctx, names, ttl)
	}
}

// cell is the rounds of one locker at one setting, with their medians.
type cell struct {
	Locker string      `json:"locker"`
	Conc   int         `json:"conc"`
	Rows   int         `json:"rows,omitempty"`  // other rows in the table
	Level  int         `json:"level,omitempty"` // table size this cell is compared at
	Names  int         `json:"names,omitempty"`
	Rounds []roundStat `json:"rounds"`
}

func (c *cell) opsPerSec() float64 {
	v := make([]float64, len(c.Rounds))
	for i, r := range c.Rounds {
		v[i] = r.OpsPerSec
	}
	return median(v)
}

func (c *cell) p50() time.Duration {
	v := make([]time.Duration, len(c.Rounds))
	for i, r := range c.Rounds {
		v[i] = r.P50
	}
	return medianDur(v)
}

func (c *cell) p99() time.Duration {
	v := make([]time.Duration, len(c.Rounds))
	for i, r := range c.Rounds {
		v[i] = r.P99
	}
	return medianDur(v)
}

func (c *cell) errors() (int, string) {
	n, first := 0, ""
	for _, r := range c.Rounds {
		n += r.Errors
		if first == "" {
			first = r.FirstErr
		}
	}
	return n, first
}

// costRatio is the median over rounds of base's throughput divided by c's:
// how many times more each operation of c costs. Rounds are paired by
// index, which interleaving makes neighbours in time.
func costRatio(c, base *cell) float64 {
	var v []float64
	for i := range min(len(c.Rounds), len(base.Rounds)) {
		if c.Rounds[i].OpsPerSec > 0 {
			v = append(v, base.Rounds[i].OpsPerSec/c.Rounds[i].OpsPerSec)
		}
	}
	return median(v)
}

// latencyRatio is the median over rounds of c's p50 over base's p50.
func latencyRatio(c, base *cell) float64 {
	var v []float64
	for i := range min(len(c.Rounds), len(base.Rounds)) {
		if base.Rounds[i].P50 > 0 {
			v = append(v, float64(c.Rounds[i].P50)/float64(base.Rounds[i].P50))
		}
	}
	return median(v)
}

// rotate returns s rotated left by r, so that each round starts with a
// different locker and none always runs first or last.
func rotate[T any](s []T, r int) []T {
	if len(s) == 0 {
		return s
	}
	r %= len(s)
	return append(slices.Clone(s[r:]), s[:r]...)
}
