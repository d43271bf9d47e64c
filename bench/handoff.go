package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Workload 2, the contended hand-off: workers loop on one name — wait for
// it, hold it for -hold, release it, pause for -think — for -handoff-dur.
// Every hold is recorded as (worker, acquired, release began) on the wall
// clock, which all processes of one machine share. Sorted by acquisition,
// consecutive holds by different workers give the hand-off gap: the time
// the lock stood free although someone was waiting for it.

// handoffSpec is what a hand-off worker needs; it travels to worker
// processes as JSON.
type handoffSpec struct {
	Kind       string        `json:"kind"` // database; "" for Redis
	DSN        string        `json:"dsn"`
	Tables     tableNames    `json:"tables"`
	Salt       string        `json:"salt"`
	Locker     string        `json:"locker"`
	Name       string        `json:"name"`
	TTL        time.Duration `json:"ttl"`
	Hold       time.Duration `json:"hold"`
	Think      time.Duration `json:"think"`
	RedisAddr  string        `json:"redis"`
	DjangoPoll time.Duration `json:"django_poll"`
	Worker     int           `json:"worker"`
}

// hold is one tenure of the lock: worker, acquired and release-began times
// in Unix nanoseconds.
type hold [3]int64

// workerOut is what one worker reports.
type workerOut struct {
	Holds    []hold `json:"holds"`
	Errors   int    `json:"errors"`
	FirstErr string `json:"first_error,omitempty"`
}

// holdLoop is one worker's life, until end.
func holdLoop(ctx context.Context, s session, spec handoffSpec, end time.Time) workerOut {
	var out workerOut
	for ctx.Err() == nil {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		held, err := s.lock(ctx, spec.Name, spec.TTL, left)
		if errors.Is(err, errHeld) {
			continue
		}
		if err != nil {
			out.Errors++
			if out.FirstErr == "" {
				out.FirstErr = err.Error()
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		acq := time.Now().UnixNano()
		time.Sleep(spec.Hold)
		rel := time.Now().UnixNano()
		if err := s.unlock(ctx, held); err != nil {
			out.Errors++
			if out.FirstErr == "" {
				out.FirstErr = err.Error()
			}
		}
		out.Holds = append(out.Holds, hold{int64(spec.Worker), acq, rel})
		if spec.Think > 0 {
			time.Sleep(spec.Think)
		}
	}
	return out
}

// handoffResult summarises one hand-off run.
type handoffResult struct {
	Locker    string        `json:"locker"`
	Mode      string        `json:"mode"` // "in-process" or "cross-process"
	Waker     string        `json:"waker,omitempty"`
	Workers   int           `json:"workers"`
	Duration  time.Duration `json:"duration_ns"`
	Holds     int           `json:"holds"`
	Handoffs  int           `json:"handoffs"`
	GapP50    time.Duration `json:"gap_p50_ns"`
	GapP90    time.Duration `json:"gap_p90_ns"`
	GapP99    time.Duration `json:"gap_p99_ns"`
	GapMax    time.Duration `json:"gap_max_ns"`
	SelfShare float64       `json:"self_share"` // holds that went back to the releasing worker
	PerWorker []int         `json:"per_worker"`
	Jain      float64       `json:"jain"`
	Starved   int           `json:"starved"`  // workers that never got the lock
	Overlaps  int           `json:"overlaps"` // holds that began before the previous one ended: must be 0
	Errors    int           `json:"errors"`
	FirstErr  string        `json:"first_error,omitempty"`
	Failed    string        `json:"failed,omitempty"` // the run itself failed (e.g. a worker could not start)
}

func analyzeHandoff(outs []workerOut, workers int) handoffResult {
	res := handoffResult{Workers: workers, PerWorker: make([]int, workers)}
	var holds []hold
	for _, o := range outs {
		holds = append(holds, o.Holds...)
		res.Errors += o.Errors
		if res.FirstErr == "" {
			res.FirstErr = o.FirstErr
		}
	}
	slices.SortFunc(holds, func(a, b hold) int { return int(a[1] - b[1]) })
	var gaps []time.Duration
	self := 0
	for i, h := range holds {
		res.PerWorker[h[0]]++
		if i == 0 {
			continue
		}
		prev := holds[i-1]
		if h[1] < prev[2] {
			res.Overlaps++
		}
		if h[0] == prev[0] {
			self++
			continue
		}
		gaps = append(gaps, time.Duration(h[1]-prev[2]))
	}
	slices.Sort(gaps)
	res.Holds, res.Handoffs = len(holds), len(gaps)
	res.GapP50, res.GapP90, res.GapP99 = percentile(gaps, 50), percentile(gaps, 90), percentile(gaps, 99)
	if len(gaps) > 0 {
		res.GapMax = gaps[len(gaps)-1]
	}
	if len(holds) > 1 {
		res.SelfShare = float64(self) / float64(len(holds)-1)
	}
	res.Jain = jain(res.PerWorker)
	for _, c := range res.PerWorker {
		if c == 0 {
			res.Starved++
		}
	}
	return res
}

// fail records that the run itself failed.
func (h *handoffResult) fail(err error) {
	if err != nil {
		h.Failed = err.Error()
	}
}

// handoffInProcess runs the workers as goroutines of this process, sharing
// one locker (and so, for lockmgr, one Manager and its in-process waker).
func handoffInProcess(ctx context.Context, lk locker, spec handoffSpec, workers int, dur time.Duration) (handoffResult, error) {
	sessions := make([]session, workers)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				_ = s.close()
			}
		}
	}()
	failed := handoffResult{Mode: "in-process", Duration: dur, Workers: workers}
	for w := range sessions {
		s, err := lk.session(ctx)
		if err != nil {
			return failed, err
		}
		sessions[w] = s
	}
	outs := make([]workerOut, workers)
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp := spec
			sp.Worker = w
			outs[w] = holdLoop(ctx, sessions[w], sp, end)
		}()
	}
	wg.Wait()
	res := analyzeHandoff(outs, workers)
	res.Mode, res.Duration = "in-process", dur
	return res, ctx.Err()
}

// handoff runs workload 2 on the runner's database.
func (r *runner) handoff(ctx context.Context) error {
	lks := r.ordered(lkLockmgr, lkNotify, lkNative, lkDjango)
	r.log.Info("workload: contended hand-off", "lockers", labels(lks), "goroutines", r.cfg.HandoffLocal,
		"processes", r.cfg.HandoffWorkers, "dur", r.cfg.HandoffDur)
	for i, lk := range lks {
		spec := r.handoffSpec(lk.label(), i)
		res, err := handoffInProcess(ctx, lk, spec, r.cfg.HandoffLocal, r.cfg.HandoffDur)
		res.Locker = lk.label()
		res.fail(err)
		if ll, ok := lk.(*lockmgrLocker); ok {
			res.Waker = "in-process"
			if ll.waker != "backoff" {
				res.Waker += " + " + ll.waker
			}
		}
		r.res.Handoff = append(r.res.Handoff, res)
		r.log.Info("hand-off", "locker", lk.label(), "mode", res.Mode, "holds", res.Holds, "p50", res.GapP50, "starved", res.Starved)
		if err != nil {
			return err
		}
		if !r.cfg.CrossProcess {
			continue
		}
		spec.Name += "-x"
		r.shrinkPools() // room for the workers' connections
		res, err = handoffProcesses(ctx, spec, r.cfg.HandoffWorkers, r.cfg.HandoffDur)
		res.Locker = lk.label()
		res.fail(err)
		if ll, ok := lk.(*lockmgrLocker); ok {
			res.Waker = ll.waker
		}
		r.res.Handoff = append(r.res.Handoff, res)
		r.log.Info("hand-off", "locker", lk.label(), "mode", res.Mode, "holds", res.Holds, "p50", res.GapP50, "starved", res.Starved)
		if err != nil {
			return fmt.Errorf("cross-process hand-off of %s: %w", lk.label(), err)
		}
	}
	return r.clearAll(ctx)
}

func (r *runner) handoffSpec(label string, i int) handoffSpec {
	return handoffSpec{
		Kind: r.t.kind, DSN: r.t.dsn, Tables: r.t.tables, Salt: r.t.salt, Locker: label,
		Name: fmt.Sprintf("handoff-%s-%d", label, i), TTL: r.cfg.TTL, Hold: r.cfg.Hold, Think: r.cfg.Think,
		RedisAddr: r.cfg.RedisAddr, DjangoPoll: r.cfg.DjangoPoll,
	}
}
