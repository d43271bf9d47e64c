package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gormlock/lockmgr"
)

// Metrics are lockmgr's lifecycle events as Prometheus metrics. Each is
// labelled with the lock's family, the part of its name before the first
// ':' ("shard:2" → "shard"): lock names are often unbounded (one per
// invoice, per user), and a label per name would be too.
type Metrics struct {
	acquired, contended, released, renewed, lost *prometheus.CounterVec
	acquireSeconds, holdSeconds                  *prometheus.HistogramVec

	mu    sync.Mutex
	since map[string]time.Time // acquisition time by lock token, for hold time
}

// NewMetrics registers lockmgr's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"lock"})
		reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"lock"})
		reg.MustRegister(h)
		return h
	}
	return &Metrics{
		acquired:  counter("lockmgr_acquired_total", "Locks acquired."),
		contended: counter("lockmgr_contended_total", "Acquisition attempts that found the lock held."),
		released:  counter("lockmgr_released_total", "Locks released or unlocked."),
		renewed:   counter("lockmgr_renewed_total", "Lock renewals, keep-alive ones included."),
		lost:      counter("lockmgr_lost_total", "Scopes whose lock was lost while they held it."),
		acquireSeconds: histogram("lockmgr_acquire_seconds", "Time from the first attempt to acquisition, waiting included.",
			prometheus.ExponentialBuckets(0.0005, 4, 8)),
		holdSeconds: histogram("lockmgr_hold_seconds", "How long locks were held, until released or lost.",
			prometheus.ExponentialBuckets(0.005, 4, 8)),
		since: map[string]time.Time{},
	}
}

// Hooks feeds the metrics from a Manager: lockmgr.New(db, lockmgr.WithHooks(m.Hooks())).
// Hooks run on lockmgr's goroutines and must not block; these only count.
func (x *Metrics) Hooks() lockmgr.Hooks {
	return lockmgr.Hooks{
		OnAcquire: func(l *lockmgr.Lock, d time.Duration) {
			x.acquired.WithLabelValues(family(l.Name)).Inc()
			x.acquireSeconds.WithLabelValues(family(l.Name)).Observe(d.Seconds())
			x.mu.Lock()
			x.since[l.Token] = time.Now()
			x.mu.Unlock()
		},
		OnContended: func(l *lockmgr.Lock, _ time.Duration) {
			x.contended.WithLabelValues(family(l.Name)).Inc()
		},
		OnRenew: func(l *lockmgr.Lock, _ time.Duration) {
			x.renewed.WithLabelValues(family(l.Name)).Inc()
		},
		OnRelease: func(l *lockmgr.Lock, _ time.Duration) {
			x.released.WithLabelValues(family(l.Name)).Inc()
			x.held(l) // the lock's own token: Release, or a scope's end
		},
		OnLost: func(l *lockmgr.Lock, _ time.Duration) {
			x.lost.WithLabelValues(family(l.Name)).Inc()
			x.held(l)
		},
	}
}

// held observes the hold time of the acquisition l's token made. The
// duration a hook gets is the call's, not the hold's, so the acquisition
// time is kept per token from OnAcquire.
func (x *Metrics) held(l *lockmgr.Lock) {
	x.mu.Lock()
	at, ok := x.since[l.Token]
	delete(x.since, l.Token)
	x.mu.Unlock()
	if ok {
		x.holdSeconds.WithLabelValues(family(l.Name)).Observe(time.Since(at).Seconds())
	}
}

func family(name string) string {
	f, _, _ := strings.Cut(name, ":")
	return f
}

// Summary totals every lockmgr counter in g, one line per metric.
func Summary(g prometheus.Gatherer) (string, error) {
	families, err := g.Gather()
	if err != nil {
		return "", err
	}
	var lines []string
	for _, mf := range families {
		var total float64
		var parts []string
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			if m.GetHistogram() != nil {
				v = float64(m.GetHistogram().GetSampleCount())
			}
			total += v
			parts = append(parts, fmt.Sprintf("%s=%d", m.GetLabel()[0].GetValue(), int64(v)))
		}
		sort.Strings(parts)
		lines = append(lines, fmt.Sprintf("  %-26s %6d  (%s)", mf.GetName(), int64(total), strings.Join(parts, " ")))
	}
	return strings.Join(lines, "\n"), nil
}
