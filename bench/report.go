package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// renderMarkdown is RESULTS.md: setting, targets, then one section per
// workload with a table per database.
func renderMarkdown(res *results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	kind := "full run"
	if res.Config.Quick {
		kind = "quick run (-quick): fewer, shorter rounds; read ratios, not absolute numbers"
	}
	w("# lockmgr benchmark results\n\n")
	w("%s, %s. Command: `cd bench && %s`.\n\n", res.Started.UTC().Format("2006-01-02 15:04 MST"), kind, res.Config.Command)
	w("Rounds: %d × %s per measurement, interleaved (A, B, C, B, C, A …); every number is the **median of rounds**, every ratio the median of per-round ratios. ",
		res.Config.Rounds, res.Config.Dur)
	w("Lock expiry %s. Took %s.\n\n", res.Config.TTL, res.Finished.Sub(res.Started).Round(time.Second))
	w("![uncontended cycle throughput](cycle.png)\n\n")
	w("## Summary\n\n%s\n", renderSummary(res))
	renderSetting(w, res)
	renderTargets(w, res)
	renderCycle(w, res)
	renderHandoff(w, res)
	renderTable(w, res)
	renderSetLock(w, res)
	renderSoak(w, res)
	renderLegend(w, res)
	return b.String()
}

type writef func(format string, a ...any)

// renderSummary is the ratios at a glance, one column per database; the
// README quotes it.
func renderSummary(res *results) string {
	var dbs []*dbResult
	for _, d := range res.DBs {
		if d.Skipped == "" {
			dbs = append(dbs, d)
		}
	}
	if len(dbs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| ratio (median of interleaved rounds) |")
	for _, d := range dbs {
		b.WriteString(" " + d.Title + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(dbs)) + "\n")
	row := func(label string, f func(d *dbResult) string) {
		b.WriteString("| " + label + " |")
		for _, d := range dbs {
			b.WriteString(" " + f(d) + " |")
		}
		b.WriteString("\n")
	}
	concs := res.Config.Concs
	perConc := func(cells []*cell, a, base string, ratio func(c, base *cell) float64) func(d *dbResult) string {
		return func(d *dbResult) string {
			var parts []string
			for _, conc := range concs {
				at := func(c *cell) bool { return c.Conc == conc }
				ca, cb := find(cellsOf(d, cells), a, at), find(cellsOf(d, cells), base, at)
				if ca == nil || cb == nil {
					parts = append(parts, "–")
					continue
				}
				parts = append(parts, fmt.Sprintf("%.2f×", ratio(ca, cb)))
			}
			return strings.Join(parts, " / ")
		}
	}
	cs := fmt.Sprint(concs)
	row("lockmgr's cycle cost ÷ the floor's, "+cs+" goroutines (target ≤ 1.2)", perConc(nil, lkLockmgr, lkFloor, costRatio))
	row("lockmgr+pgnotify's cycle cost ÷ the floor's, "+cs+" (target ≤ 1.2)", perConc(nil, lkNotify, lkFloor, costRatio))
	row("lockmgr's throughput ÷ django-algo's, "+cs+" (target ≥ 3)", perConc(nil, lkDjango, lkLockmgr, costRatio))
	row("the floor's throughput ÷ django-algo's, "+cs+" (the ceiling)", perConc(nil, lkDjango, lkFloor, costRatio))
	row("database session locks' throughput ÷ lockmgr's, "+cs, perConc(nil, lkLockmgr, lkNative, costRatio))
	row("redislock's throughput ÷ lockmgr's, "+cs, perConc(nil, lkLockmgr, lkRedis, costRatio))
	row("lockmgr hand-off gap p50: in one process / across processes (target ≤ 50 ms / ≤ 5 ms PG notify)", func(d *dbResult) string {
		var parts []string
		for _, h := range d.Handoff {
			if (h.Locker == lkLockmgr || h.Locker == lkNotify) && h.Failed == "" {
				parts = append(parts, fmt.Sprintf("%s %s", fmtDur(h.GapP50), shortMode(h)))
			}
		}
		return orDash(strings.Join(parts, ", "))
	})
	row("lockmgr hand-off gap p50 (p99) ÷ database session locks', in one process / across processes (lockmgr+pgnotify on PostgreSQL)", func(d *dbResult) string {
		var parts []string
		for _, mode := range []string{"in-process", "cross-process"} {
			lm, nat := handoffOf(d, mode), findHandoff(d, lkNative, mode)
			if lm == nil || nat == nil || nat.GapP50 <= 0 || nat.GapP99 <= 0 {
				parts = append(parts, "–")
				continue
			}
			parts = append(parts, fmt.Sprintf("%.1f× (%.1f×)", float64(lm.GapP50)/float64(nat.GapP50), float64(lm.GapP99)/float64(nat.GapP99)))
		}
		return strings.Join(parts, " / ")
	})
	row("lockmgr hand-off gap p50 across processes ÷ the floor's cycle p50 at 1 goroutine (a durable release + a durable acquire)", func(d *dbResult) string {
		lm, fl := handoffOf(d, "cross-process"), find(d.Cycle, lkFloor, func(c *cell) bool { return c.Conc == 1 })
		if lm == nil || fl == nil || fl.p50() <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f× (%s ÷ %s)", float64(lm.GapP50)/float64(fl.p50()), fmtDur(lm.GapP50), fmtDur(fl.p50()))
	})
	row("lockmgr cycle p50 with the most rows ÷ empty table (target ≤ 1.2)", func(d *dbResult) string {
		for _, v := range tableVerdicts(d) {
			return v.Measured + " (" + v.Target[len("cycle at "):strings.Index(v.Target, " rows")] + " rows)"
		}
		return "–"
	})
	row("lockmgr SetLock cost ÷ the floor's, "+fmt.Sprint(res.Config.SetSizes)+" names", func(d *dbResult) string {
		var parts []string
		for _, n := range res.Config.SetSizes {
			at := func(c *cell) bool { return c.Names == n }
			lm, fl := find(d.SetLock, lkLockmgr, at), find(d.SetLock, lkFloor, at)
			if lm == nil || fl == nil {
				parts = append(parts, "–")
				continue
			}
			parts = append(parts, fmt.Sprintf("%.2f×", costRatio(lm, fl)))
		}
		return strings.Join(parts, " / ")
	})
	return b.String()
}

// handoffOf is lockmgr's hand-off run of mode on d: with pgnotify where
// there is one (PostgreSQL), else with backoff.
func handoffOf(d *dbResult, mode string) *handoffResult {
	if h := findHandoff(d, lkNotify, mode); h != nil {
		return h
	}
	return findHandoff(d, lkLockmgr, mode)
}

func findHandoff(d *dbResult, locker, mode string) *handoffResult {
	for i, h := range d.Handoff {
		if h.Locker == locker && h.Mode == mode && h.Failed == "" && h.Handoffs > 0 {
			return &d.Handoff[i]
		}
	}
	return nil
}

// cellsOf picks the cycle cells of d unless cells is given.
func cellsOf(d *dbResult, cells []*cell) []*cell {
	if cells != nil {
		return cells
	}
	return d.Cycle
}

func shortMode(h handoffResult) string {
	mode := "in-proc"
	if h.Mode == "cross-process" {
		mode = "x-proc"
	}
	if h.Locker == lkNotify {
		mode += " notify"
	}
	return "(" + mode + ")"
}

func renderSetting(w writef, res *results) {
	m := res.Machine
	w("## Machine and versions\n\n| | |\n|---|---|\n")
	w("| CPU | %s, %d cores (shared machine; load at start %s) |\n| OS | %s, kernel %s |\n| Go | %s |\n", m.CPU, m.Cores, m.Load, m.OS, m.Kernel, m.Go)
	w("| lockmgr | %s |\n", res.LockmgrRev)
	for _, d := range res.DBs {
		v := d.Version
		if d.Skipped != "" {
			v = "skipped: " + d.Skipped
		}
		w("| %s | %s |\n", d.Title, v)
	}
	if res.Redis != nil && res.Redis.Version != "" {
		w("| Redis | %s |\n", res.Redis.Version)
	}
	var mods []string
	for k, v := range res.Modules {
		mods = append(mods, k+" "+v)
	}
	slices.Sort(mods)
	w("| modules | %s |\n\n", strings.Join(mods, ", "))
}

func renderTargets(w writef, res *results) {
	vs := checkTargets(res)
	if len(vs) == 0 {
		return
	}
	w("## Targets\n\n| target | database | measured | met | note |\n|---|---|---|---|---|\n")
	for _, v := range vs {
		mark := "✅"
		if !v.Met {
			mark = "❌"
		}
		if v.Why == "informational" {
			mark, v.Why = "–", ""
		}
		w("| %s | %s | %s | %s | %s |\n", v.Target, v.DB, v.Measured, mark, v.Why)
	}
	w("\n")
}

func renderCycle(w writef, res *results) {
	if !slices.ContainsFunc(res.DBs, func(d *dbResult) bool { return len(d.Cycle) > 0 }) {
		return
	}
	w("## 1. Uncontended cycle\n\nAcquire + release of a name no one else uses, N goroutines. *× floor* is the cost of one cycle relative to the floor (floor's throughput ÷ this locker's, per round).\n\n")
	for _, d := range res.DBs {
		if len(d.Cycle) == 0 {
			continue
		}
		w("### %s\n\n| locker | goroutines | cycles/s | p50 | p99 | × floor | errors |\n|---|---:|---:|---:|---:|---:|---|\n", d.Title)
		for _, c := range d.Cycle {
			fl := find(d.Cycle, lkFloor, func(x *cell) bool { return x.Conc == c.Conc })
			w("| %s | %d | %s | %s | %s | %s | %s |\n", c.Locker, c.Conc, fmtRate(c.opsPerSec()),
				fmtDur(c.p50()), fmtDur(c.p99()), ratioOr(fl, func() float64 { return costRatio(c, fl) }), errCell(c))
		}
		w("\n")
	}
}

func renderHandoff(w writef, res *results) {
	var rows [][2]any
	for _, d := range res.DBs {
		for _, h := range d.Handoff {
			rows = append(rows, [2]any{d.Title, h})
		}
	}
	if res.Redis != nil {
		for _, h := range res.Redis.Handoff {
			rows = append(rows, [2]any{"Redis", h})
		}
	}
	if len(rows) == 0 {
		return
	}
	w("## 2. Contended hand-off\n\nWorkers on one name (%d goroutines in one process, or %d processes), each holding it %s then pausing %s before asking again. ",
		res.Config.HandoffLocal, res.Config.HandoffWorkers, res.Config.Hold, res.Config.Think)
	w("*Gap* is the time from a release starting to the next *other* worker's acquire returning (the lock stood free while someone waited). ")
	w("*Self* is the share of holds that went straight back to the worker that had just released. ")
	w("Fairness: holds per worker (min–max) and Jain's index (1 = perfectly even, 1/N = one worker got all).\n\n")
	w("| database | locker | mode | workers | waker | holds | hand-offs | gap p50 | p90 | p99 | max | self | per worker | Jain | starved | overlaps | errors |\n")
	w("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		h := r[1].(handoffResult)
		lo, hi := 0, 0
		if len(h.PerWorker) > 0 {
			lo, hi = slices.Min(h.PerWorker), slices.Max(h.PerWorker)
		}
		errs := "0"
		if h.Errors > 0 {
			errs = fmt.Sprintf("%d: %s", h.Errors, clip(h.FirstErr))
		}
		if h.Failed != "" {
			errs = "run failed: " + clip(h.Failed)
		}
		w("| %s | %s | %s | %d | %s | %d | %d | %s | %s | %s | %s | %.0f %% | %d–%d | %.2f | %d | %d | %s |\n",
			r[0], h.Locker, h.Mode, h.Workers, orDash(h.Waker), h.Holds, h.Handoffs, fmtDur(h.GapP50), fmtDur(h.GapP90),
			fmtDur(h.GapP99), fmtDur(h.GapMax), 100*h.SelfShare, lo, hi, h.Jain, h.Starved, h.Overlaps, errs)
	}
	w("\n")
}

func renderTable(w writef, res *results) {
	if !slices.ContainsFunc(res.DBs, func(d *dbResult) bool { return len(d.Table) > 0 }) {
		return
	}
	w("## 3. Table size\n\nThe uncontended cycle (%d goroutine%s) on a table holding other rows, half live and half expired, ", res.Config.TableConc, plural(res.Config.TableConc))
	w("interleaved with the same locker on an empty table of its own. *vs empty* is the median of per-round p50 ratios to that empty table.\n\n")
	w("| database | other rows | locker | cycles/s | p50 | p99 | × floor | vs empty |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, d := range res.DBs {
		for _, c := range d.Table {
			same := func(x *cell) bool { return x.Rows == c.Rows && x.Level == c.Level }
			fl := find(d.Table, lkFloor, same)
			empty := find(d.Table, c.Locker, func(x *cell) bool { return x.Rows == 0 && x.Level == c.Level })
			w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", d.Title, fmtRows(c.Rows), c.Locker, fmtRate(c.opsPerSec()),
				fmtDur(c.p50()), fmtDur(c.p99()), ratioOr(fl, func() float64 { return costRatio(c, fl) }),
				ratioOr(empty, func() float64 { return latencyRatio(c, empty) }))
		}
	}
	w("\n")
}

func renderSetLock(w writef, res *results) {
	if !slices.ContainsFunc(res.DBs, func(d *dbResult) bool { return len(d.SetLock) > 0 }) {
		return
	}
	w("## 4. SetLock\n\nOne call creating N fresh names (django's `set_lock` defaults: create, renew), one goroutine. The floor is one transaction of N prepared upserts.\n\n")
	w("| database | names | locker | calls/s | names/s | p50 | p99 | × floor | errors |\n|---|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, d := range res.DBs {
		for _, c := range d.SetLock {
			fl := find(d.SetLock, lkFloor, func(x *cell) bool { return x.Names == c.Names })
			w("| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", d.Title, c.Names, c.Locker, fmtRate(c.opsPerSec()),
				fmtRate(c.opsPerSec()*float64(c.Names)), fmtDur(c.p50()), fmtDur(c.p99()),
				ratioOr(fl, func() float64 { return costRatio(c, fl) }), errCell(c))
		}
	}
	w("\n")
}

func renderSoak(w writef, res *results) {
	if !slices.ContainsFunc(res.DBs, func(d *dbResult) bool { return d.Soak != nil }) {
		return
	}
	w("## 5. Steadiness\n\nlockmgr alone for %s: 4 goroutines cycling, 4 waiting on one name (Wait 200 ms), 2 scopes (Do, 1.5 s expiry, keep-alive). Goroutines and live heap (after GC) sampled every second.\n\n", res.Config.SoakDur)
	w("| database | operations | errors | goroutines idle → under load (first … last) → after | live heap first → last | steady |\n|---|---:|---|---|---|---|\n")
	for _, d := range res.DBs {
		s := d.Soak
		if s == nil || len(s.Goroutines) == 0 {
			continue
		}
		g, h := s.steady()
		n := len(s.Goroutines)
		errs := fmt.Sprint(s.Errors)
		if s.Errors > 0 {
			errs += ": " + clip(s.FirstErr)
		}
		w("| %s | %d | %s | %d → %d … %d → %d | %d KiB → %d KiB | goroutines %s, heap %s |\n", d.Title, s.Ops, errs,
			s.GoroutinesIdle, s.Goroutines[0], s.Goroutines[n-1], s.GoroutinesAfter, s.HeapKiB[0], s.HeapKiB[n-1], yes(g), yes(h))
	}
	w("\n")
}

func renderLegend(w writef, res *results) {
	w("## Lockers\n\n")
	for _, l := range allLockers {
		w("- **%s**: %s\n", l, lockerTitle[l])
	}
	w("\n")
	var notes []string
	for _, d := range res.DBs {
		for _, n := range d.Notes {
			notes = append(notes, d.Title+": "+n)
		}
		for _, e := range d.Errors {
			notes = append(notes, d.Title+" error: "+e)
		}
		if d.Waker != "" {
			notes = append(notes, fmt.Sprintf("%s: lockmgr's cross-process waker: %s", d.Title, d.Waker))
		}
	}
	if res.Redis != nil {
		for _, e := range res.Redis.Errors {
			notes = append(notes, "Redis error: "+e)
		}
		if res.Redis.Skipped != "" {
			notes = append(notes, "Redis skipped: "+res.Redis.Skipped)
		}
	}
	if len(notes) > 0 {
		w("## Notes\n\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
		w("\n")
	}
}

func ratioOr(base *cell, f func() float64) string {
	if base == nil {
		return "–"
	}
	r := f()
	if math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

func errCell(c *cell) string {
	n, first := c.errors()
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", n, clip(first))
}

func clip(s string) string {
	s = strings.ReplaceAll(s, "|", "/")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
