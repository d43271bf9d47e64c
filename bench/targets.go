package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// verdict is one target checked against one measurement.
type verdict struct {
	Target   string
	DB       string
	Measured string
	Met      bool
	Why      string // when missed or not measured
}

// Targets from the issue, as numbers.
const (
	maxFloorCost    = 1.2
	maxNativeGap    = 2.0 // hand-off gap across processes ÷ the database's own session locks'
	minDjangoFactor = 3.0
	maxPGCrossGap   = 5 * time.Millisecond
	maxInProcGap    = 50 * time.Millisecond
	maxTableGrowth  = 1.2
)

// checkTargets evaluates every target the run has data for.
func checkTargets(res *results) []verdict {
	var out []verdict
	for _, d := range res.DBs {
		if d.Skipped != "" {
			continue
		}
		out = append(out, cycleVerdicts(d)...)
		out = append(out, handoffVerdicts(d)...)
		out = append(out, tableVerdicts(d)...)
		out = append(out, soakVerdicts(d)...)
	}
	return out
}

func cycleVerdicts(d *dbResult) []verdict {
	var out []verdict
	concs := map[int]bool{}
	for _, c := range d.Cycle {
		concs[c.Conc] = true
	}
	for _, conc := range sortedKeys(concs) {
		at := func(c *cell) bool { return c.Conc == conc }
		lm, fl, dj := find(d.Cycle, lkLockmgr, at), find(d.Cycle, lkFloor, at), find(d.Cycle, lkDjango, at)
		if lm == nil {
			continue
		}
		for _, l := range []*cell{lm, find(d.Cycle, lkNotify, at)} {
			if fl == nil || l == nil {
				continue
			}
			r := costRatio(l, fl)
			v := verdict{
				Target: fmt.Sprintf("cycle ≤ %.1f× the floor (%s, %d goroutine%s)", maxFloorCost, l.Locker, conc, plural(conc)),
				DB:     d.Title, Measured: fmt.Sprintf("%.2f×", r), Met: r <= maxFloorCost,
			}
			if !v.Met && d.Kind != dbPostgres {
				v.Why = "the fence high-water mark write, which the floor does not make (TestFenceCostAB)"
			}
			out = append(out, v)
		}
		if dj != nil {
			r := costRatio(dj, lm) // lockmgr's throughput over django's
			v := verdict{
				Target: fmt.Sprintf("cycle ≥ %.0f× django-algo's throughput (%d goroutine%s)", minDjangoFactor, conc, plural(conc)),
				DB:     d.Title, Measured: fmt.Sprintf("%.1f×", r), Met: r >= minDjangoFactor,
			}
			if fl != nil {
				// The ceiling: what the bare SQL achieves over django on this database.
				v.Why = fmt.Sprintf("the floor: %.1f×", costRatio(dj, fl))
			}
			if n, _ := dj.errors(); n > 0 {
				v.Why = joinWhy(v.Why, fmt.Sprintf("django-algo had %d errors", n))
			}
			out = append(out, v)
		}
	}
	return out
}

func handoffVerdicts(d *dbResult) []verdict {
	var out []verdict
	notify := slices.ContainsFunc(d.Handoff, func(h handoffResult) bool { return h.Locker == lkNotify })
	for _, h := range d.Handoff {
		if h.Locker != lkLockmgr && h.Locker != lkNotify {
			continue
		}
		who := fmt.Sprintf("%s, %s", h.Locker, h.Mode)
		if h.Failed != "" || len(h.PerWorker) == 0 {
			out = append(out, verdict{Target: "hand-off, " + who, DB: d.Title, Measured: "run failed", Why: clip(h.Failed)})
			continue
		}
		switch {
		case h.Mode == "in-process":
			out = append(out, gapVerdict(d.Title, h, maxInProcGap, "hand-off median in one process ("+h.Locker+")"))
		case d.Kind == dbPostgres && (h.Locker == lkNotify || !notify):
			v := gapVerdict(d.Title, h, maxPGCrossGap, "hand-off median across processes, notify ("+h.Locker+")")
			if h.Locker != lkNotify {
				v.Why = joinWhy(v.Why, "measured with backoff only: no cross-process notifier plugged in")
			}
			out = append(out, v)
			if nat := findHandoff(d, lkNative, h.Mode); h.Locker == lkNotify && nat != nil && nat.GapP50 > 0 {
				r := float64(h.GapP50) / float64(nat.GapP50)
				v := verdict{Target: fmt.Sprintf("hand-off median across processes (%s) ≤ %.0f× the session locks'", h.Locker, maxNativeGap),
					DB: d.Title, Measured: fmt.Sprintf("%.1f× (%s ÷ %s; p99 %s ÷ %s)", r, fmtDur(h.GapP50), fmtDur(nat.GapP50),
						fmtDur(h.GapP99), fmtDur(nat.GapP99)), Met: r <= maxNativeGap}
				if fl := find(d.Cycle, lkFloor, func(c *cell) bool { return c.Conc == 1 }); !v.Met && fl != nil {
					v.Why = fmt.Sprintf("a durable hand-off commits a release and an acquisition: the floor's cycle p50 is %s, %.1f× the session locks' gap",
						fmtDur(fl.p50()), float64(fl.p50())/float64(nat.GapP50))
				}
				out = append(out, v)
			}
		default:
			out = append(out, verdict{Target: fmt.Sprintf("hand-off median across processes, %s (no target)", h.Waker),
				DB: d.Title, Measured: fmtDur(h.GapP50), Met: true, Why: "informational"})
		}
		v := verdict{
			Target: fmt.Sprintf("no waiter starves (%s, %d workers, %s)", who, h.Workers, h.Duration),
			DB:     d.Title, Measured: fmt.Sprintf("%d starved; min %d holds", h.Starved, slices.Min(h.PerWorker)),
			Met: h.Starved == 0 && h.Overlaps == 0,
		}
		if h.Overlaps > 0 {
			v.Why = fmt.Sprintf("%d overlapping holds: mutual exclusion broken", h.Overlaps)
		}
		if want := wantWorkers(h); h.Workers < want || h.Duration < 10*time.Second {
			v.Why = joinWhy(v.Why, fmt.Sprintf("shorter than the target's %d workers × 10 s", want))
		}
		out = append(out, v)
	}
	return out
}

func gapVerdict(db string, h handoffResult, limit time.Duration, what string) verdict {
	v := verdict{Target: fmt.Sprintf("%s ≤ %s", what, fmtDur(limit)), DB: db, Measured: fmtDur(h.GapP50),
		Met: h.Handoffs > 0 && h.GapP50 <= limit}
	if h.Handoffs == 0 {
		v.Why = "no hand-off happened"
	}
	return v
}

func tableVerdicts(d *dbResult) []verdict {
	top := 0
	for _, c := range d.Table {
		top = max(top, c.Level)
	}
	at := func(rows int) func(*cell) bool {
		return func(c *cell) bool { return c.Level == top && c.Rows == rows }
	}
	empty, full := find(d.Table, lkLockmgr, at(0)), find(d.Table, lkLockmgr, at(top))
	if empty == nil || full == nil {
		return nil
	}
	r := latencyRatio(full, empty)
	v := verdict{Target: fmt.Sprintf("cycle at %s rows ≤ %.1f× an empty table (p50)", fmtRows(top), maxTableGrowth),
		DB: d.Title, Measured: fmt.Sprintf("%.2f×", r), Met: r <= maxTableGrowth}
	if fe, ff := find(d.Table, lkFloor, at(0)), find(d.Table, lkFloor, at(top)); fe != nil && ff != nil {
		v.Why = fmt.Sprintf("floor: %.2f×", latencyRatio(ff, fe))
	}
	if top < 1_000_000 {
		v.Why = joinWhy(v.Why, "the target is for 1 000 000 rows")
	}
	return []verdict{v}
}

func soakVerdicts(d *dbResult) []verdict {
	s := d.Soak
	if s == nil {
		return nil
	}
	g, h := s.steady()
	n := len(s.Goroutines)
	if n == 0 {
		return nil
	}
	why := ""
	if s.Duration < time.Minute {
		why = "shorter than the target's 1 minute"
	}
	return []verdict{
		{Target: "steady goroutine count under load and after", DB: d.Title, Met: g, Why: why,
			Measured: fmt.Sprintf("idle %d → %d…%d → after %d", s.GoroutinesIdle, s.Goroutines[0], s.Goroutines[n-1], s.GoroutinesAfter)},
		{Target: "steady live heap under load", DB: d.Title, Met: h, Why: why,
			Measured: fmt.Sprintf("%d KiB → %d KiB", s.HeapKiB[0], s.HeapKiB[n-1])},
	}
}

func sortedKeys(m map[int]bool) []int {
	var k []int
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func joinWhy(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", ms(d))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", ms(d))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func fmtRows(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%d M", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%d k", n/1000)
	}
	return fmt.Sprint(n)
}

func fmtRate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// wantWorkers is the target's worker count for a hand-off run: 64
// goroutines in one process, 16 processes.
func wantWorkers(h handoffResult) int {
	if h.Mode == "cross-process" {
		return 16
	}
	return 64
}
