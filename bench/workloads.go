package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// runner runs the workloads on one database.
type runner struct {
	cfg     *config
	t       *target
	lockers map[string]locker // by label; those that could be built
	res     *dbResult
	log     *slog.Logger
	conns   int // pool size
}

// ordered returns the runner's lockers among want, in want's order.
func (r *runner) ordered(want ...string) []locker {
	var out []locker
	for _, w := range want {
		if l, ok := r.lockers[w]; ok && r.cfg.wantLocker(w) {
			out = append(out, l)
		}
	}
	return out
}

// plan says what rounds() measures: for each setting (a concurrency, a
// table size, a name count), the concurrency to run at, how to mark the
// cell, and the operation.
type plan struct {
	settings []int
	conc     func(setting int) int
	tag      func(c *cell, setting int)
	minOps   int
	op       func(lk locker, setting, round int) opFunc
}

// rounds measures every locker at every setting, interleaved: each round
// visits each setting and, within it, each locker, starting with a
// different locker every round. A short untimed warm-up comes first.
// Cells come back setting by setting, lockers in lks's order.
func (r *runner) rounds(ctx context.Context, p plan, lks []locker) ([]*cell, error) {
	var order []*cell
	cells := map[[2]int]*cell{}
	for si, s := range p.settings {
		for li, lk := range lks {
			c := &cell{Locker: lk.label(), Conc: p.conc(s)}
			if p.tag != nil {
				p.tag(c, s)
			}
			cells[[2]int{si, li}] = c
			order = append(order, c)
		}
	}
	warm := min(r.cfg.Dur, 200*time.Millisecond)
	for _, s := range p.settings {
		for _, lk := range lks {
			if _, err := measure(ctx, lk, p.conc(s), warm, 1, p.op(lk, s, -1)); err != nil {
				return order, err
			}
		}
	}
	idx := make([]int, len(lks))
	for i := range idx {
		idx[i] = i
	}
	for round := range r.cfg.Rounds {
		for si, s := range p.settings {
			for _, li := range rotate(idx, round) {
				lk := lks[li]
				st, err := measure(ctx, lk, p.conc(s), r.cfg.Dur, p.minOps, p.op(lk, s, round))
				if err != nil {
					return order, err
				}
				c := cells[[2]int{si, li}]
				c.Rounds = append(c.Rounds, st)
				if st.Errors > 0 {
					r.log.Warn("errors", "locker", lk.label(), "setting", s, "n", st.Errors, "first", st.FirstErr)
				}
			}
		}
		r.log.Info("round done", "round", round+1, "of", r.cfg.Rounds)
	}
	return order, nil
}

// cycle is workload 1: the uncontended acquire+release of distinct names.
func (r *runner) cycle(ctx context.Context) error {
	lks := r.ordered(lkLockmgr, lkNotify, lkFloor, lkNative, lkDjango, lkRedis)
	r.log.Info("workload: uncontended cycle", "lockers", labels(lks), "conc", r.cfg.Concs)
	cells, err := r.rounds(ctx, plan{
		settings: r.cfg.Concs,
		conc:     func(s int) int { return s },
		minOps:   1,
		op: func(_ locker, conc, round int) opFunc {
			return cycleOp(fmt.Sprintf("cy-%d-%d-", conc, round), r.cfg.TTL)
		},
	}, lks)
	r.res.Cycle = cells
	if err != nil {
		return err
	}
	// Empty the tables the cycle used (releases delete, but django-algo
	// and failed runs may leave rows).
	return r.clearAll(ctx)
}

// setLock is workload 4: SetLock of 1, 10 and 100 fresh names per call.
func (r *runner) setLock(ctx context.Context) error {
	var lks []locker
	for _, l := range r.ordered(lkLockmgr, lkFloor, lkDjango) {
		if _, ok := l.(setLocker); ok {
			lks = append(lks, l)
		}
	}
	r.log.Info("workload: SetLock", "lockers", labels(lks), "names", r.cfg.SetSizes)
	cells, err := r.rounds(ctx, plan{
		settings: r.cfg.SetSizes,
		conc:     func(int) int { return 1 },
		tag:      func(c *cell, n int) { c.Names = n },
		minOps:   3,
		op: func(lk locker, n, round int) opFunc {
			return setLockOp(lk.(setLocker), fmt.Sprintf("sl-%d-%d-", n, round), n, r.cfg.TTL)
		},
	}, lks)
	r.res.SetLock = cells
	if err != nil {
		return err
	}
	return r.clearAll(ctx)
}

// shrinkPools closes the idle connections a workload left (64 goroutines
// leave 64), so that the servers' connection limits, shared with other
// people, keep room for the next workload's worker processes.
func (r *runner) shrinkPools() {
	pools := []*sql.DB{r.t.sqlDB}
	if d, ok := r.lockers[lkDjango].(*djangoLocker); ok && d.db != r.t.sqlDB {
		pools = append(pools, d.db)
	}
	for _, p := range pools {
		p.SetMaxIdleConns(1)
		p.SetMaxIdleConns(r.conns)
	}
}

// clearAll empties the tables of every locker that keeps rows.
func (r *runner) clearAll(ctx context.Context) error {
	for _, l := range r.lockers {
		if sl, ok := l.(setLocker); ok {
			if err := sl.clear(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// tableSize is workload 3: the uncontended cycle of lockmgr and the floor
// with 100 000 and 1 000 000 other rows in the table, half live and half
// expired. Each size is measured in the same interleaved rounds as the same
// locker on an empty table (a second table of each), so drift of the
// machine cancels out of the ratio. django-algo is left out: its
// clean_locks would delete the expired rows.
func (r *runner) tableSize(ctx context.Context) error {
	var sizes []int
	for _, n := range r.cfg.TableRows {
		if n > 0 && !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	var lks []locker
	var fills []string
	for _, empty := range r.ordered(lkLockmgr, lkFloor) {
		full, table, err := r.filledTwin(ctx, empty)
		if err != nil {
			return err
		}
		defer full.close()
		lks = append(lks, sized{empty, false}, sized{full, true})
		fills = append(fills, table)
	}
	if len(sizes) == 0 || len(lks) == 0 {
		return nil
	}
	r.log.Info("workload: table size", "lockers", labels(lks), "rows", sizes)
	have := 0
	for _, size := range sizes {
		start := time.Now()
		for _, table := range fills {
			if err := fillRows(ctx, r.t, table, have+1, size); err != nil {
				return fmt.Errorf("fill %s to %d rows: %w", table, size, err)
			}
			if err := r.t.analyze(ctx, table); err != nil {
				return fmt.Errorf("analyze %s: %w", table, err)
			}
		}
		r.log.Info("filled", "rows", size, "took", time.Since(start).Round(time.Millisecond))
		have = size
		cells, err := r.rounds(ctx, plan{
			settings: []int{size},
			conc:     func(int) int { return r.cfg.TableConc },
			minOps:   1,
			op: func(_ locker, rows, round int) opFunc {
				return cycleOp(fmt.Sprintf("ts-%d-%d-", rows, round), r.cfg.TTL)
			},
		}, lks)
		for i, c := range cells {
			c.Level = size
			if lks[i].(sized).full {
				c.Rows = size
			}
		}
		r.res.Table = append(r.res.Table, cells...)
		if err != nil {
			return err
		}
	}
	return nil
}

// sized marks a locker of the table-size workload as the one on the
// filled table.
type sized struct {
	locker
	full bool
}

// filledTwin builds a second locker like empty on its own table, to fill.
func (r *runner) filledTwin(ctx context.Context, empty locker) (locker, string, error) {
	if empty.label() == lkLockmgr {
		l, err := newLockmgrLocker(ctx, r.t, r.t.tables.LockmgrRows, true, false)
		if err != nil {
			return nil, "", err
		}
		return l, r.t.tables.LockmgrRows, nil
	}
	l, err := newFloorLocker(ctx, r.t, r.t.tables.FloorRows, true)
	if err != nil {
		return nil, "", err
	}
	return l, r.t.tables.FloorRows, nil
}

func labels(lks []locker) []string {
	out := make([]string, len(lks))
	for i, l := range lks {
		out[i] = l.label()
	}
	return out
}
