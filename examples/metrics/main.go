// Command metrics shows lockmgr's lifecycle hooks feeding Prometheus
// metrics, and its logger writing to log/slog, under a small workload:
// workers competing for a few shard locks, and a report job whose lock an
// operator clears while it runs, so that the job loses it.
//
//	go run ./examples/metrics             # then: curl -s localhost:9090/metrics | grep lockmgr_
//	go run ./examples/metrics -v          # log every acquisition and release too
//
// The metrics: lockmgr_acquired_total, lockmgr_contended_total,
// lockmgr_released_total, lockmgr_renewed_total, lockmgr_lost_total, and
// the histograms lockmgr_acquire_seconds (waiting included) and
// lockmgr_hold_seconds, each labelled with the lock's family.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	fs.SetOutput(out)
	dsn := fs.String("dsn", "lockmgr-metrics.db", demo.DSNHelp)
	table := fs.String("table", lockmgr.DefaultTable, "the lock table")
	addr := fs.String("addr", "127.0.0.1:9090", "serve /metrics on this address")
	workers := fs.Int("workers", 4, "workers competing for the shard locks")
	duration := fs.Duration("duration", 0, "stop after this long; 0: run until interrupted")
	verbose := fs.Bool("v", false, "log at debug level: every acquisition, release and renewal")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(demo.NewPrinter(out, false), &slog.HandlerOptions{Level: level}))

	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	db, err := demo.Open(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := lockmgr.New(db.DB, lockmgr.WithTable(*table), lockmgr.WithLogger(log), lockmgr.WithHooks(metrics.Hooks()))
	if err != nil {
		return err
	}
	if err := m.AutoMigrate(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics", "database", db.Where)

	// Stop starting new work after -duration (or at an interrupt), and let
	// the work under way finish and release its locks.
	drain := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		drain, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	workload(ctx, drain, m, log, *workers)

	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	sum, err := Summary(reg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nTotals:\n%s\n", sum)
	return nil
}

// workload runs the shard workers and the report job until drain ends;
// ctx is the one their locks are taken with.
func workload(ctx, drain context.Context, m *lockmgr.Manager, log *slog.Logger, workers int) {
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shardWorker(ctx, drain, m, log, fmt.Sprintf("worker-%d", i+1))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		reportJob(ctx, drain, m, log)
	}()
	wg.Wait()
}

// shardWorker repeatedly takes one of three shard locks, waiting up to
// 300 ms for it, and does a few milliseconds of work under it.
func shardWorker(ctx, drain context.Context, m *lockmgr.Manager, log *slog.Logger, name string) {
	for drain.Err() == nil {
		shard := fmt.Sprintf("shard:%d", 1+rand.IntN(3))
		err := m.Do(ctx, shard, func(ctx context.Context, _ *lockmgr.Scope) error {
			return pause(ctx, time.Duration(5+rand.IntN(30))*time.Millisecond)
		}, lockmgr.Expires(time.Second), lockmgr.Wait(300*time.Millisecond), lockmgr.LockedBy(name))
		if errors.Is(err, lockmgr.ErrLocked) && ctx.Err() == nil {
			log.Debug("gave up waiting", "worker", name, "lock", shard)
		}
		_ = pause(drain, time.Duration(rand.IntN(20))*time.Millisecond)
	}
}

// reportJob runs a one-second report under the lock "report:daily" every
// three seconds. During the first run an operator clears the lock (as
// `lockmgr clear report:daily` would); the scope's keep-alive finds it
// gone and cancels the job's context with cause lockmgr.ErrLockLost.
func reportJob(ctx, drain context.Context, m *lockmgr.Manager, log *slog.Logger) {
	for run := 1; drain.Err() == nil; run++ {
		err := m.Do(ctx, "report:daily", func(ctx context.Context, s *lockmgr.Scope) error {
			log.Info("report started", "run", run, "fence", s.Main().Fence)
			if run == 1 { // once the keep-alive (every 200 ms) has renewed it
				first := s.Main().LockedUntil
				go func() {
					if renewedSince(ctx, m, "report:daily", first) == nil {
						log.Info("operator clears the report's lock")
						_ = m.Unlock(context.WithoutCancel(ctx), "report:daily")
					}
				}()
			}
			if err := pause(ctx, time.Second); err != nil {
				return err // Do adds lockmgr.ErrLockLost if that is why
			}
			log.Info("report finished", "run", run)
			return nil
		}, lockmgr.Expires(600*time.Millisecond))
		switch {
		case errors.Is(err, lockmgr.ErrLockLost):
			log.Warn("report stopped: it lost its lock", "run", run)
		case err != nil && ctx.Err() == nil:
			log.Error("report failed", "run", run, "error", err)
		}
		_ = pause(drain, 2*time.Second)
	}
}

// renewedSince waits until the lock name is held until later than first, that
// is until a keep-alive has renewed it, or until ctx ends.
func renewedSince(ctx context.Context, m *lockmgr.Manager, name string, first *time.Time) error {
	for {
		if l, err := m.Get(ctx, name); err == nil && l.LockedUntil != nil && first != nil && l.LockedUntil.After(*first) {
			return nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause sleeps for d, or until ctx ends and returns its error.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
