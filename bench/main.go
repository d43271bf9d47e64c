// Command bench measures lockmgr against the ways people lock without it,
// side by side in one run: the same SQL through database/sql (the floor),
// the database's own session locks, django-lockmgr's algorithm, and
// bsm/redislock. See README.md.
//
//	cd bench && go run . -db all -quick
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

func main() {
	if isWorker() {
		os.Exit(workerMain())
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMain(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func runMain(ctx context.Context, cfg *config) error {
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var res *results
	var err error
	if cfg.Render != "" {
		res, err = loadResults(cfg.Render)
	} else {
		res, err = run(ctx, cfg, log)
	}
	if res != nil && cfg.Out != "" {
		if werr := writeResults(cfg.Out, res, !cfg.NoCharts); werr != nil {
			err = errors.Join(err, werr)
		} else {
			log.Info("results written", "dir", cfg.Out)
		}
		if cfg.Readme != "" && filepath.Clean(cfg.Out) == "results" { // the README links to results/
			if werr := writeReadme(cfg.Readme, res); werr != nil {
				log.Warn("README summary not updated", "err", werr)
			}
		}
	}
	if res != nil {
		fmt.Println(renderMarkdown(res))
	}
	if cfg.MemProfile != "" {
		f, ferr := os.Create(cfg.MemProfile)
		if ferr == nil {
			ferr = errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
		}
		err = errors.Join(err, ferr)
	}
	return err
}

// run measures every requested database, then redislock's hand-off. A
// database that -db all cannot reach is skipped and noted; one named
// explicitly is an error.
func run(ctx context.Context, cfg *config, log *slog.Logger) (*results, error) {
	suffix := randomSuffix()
	res := newResults(cfg)
	var errs []error
	for _, kind := range cfg.DBs {
		if ctx.Err() != nil {
			break
		}
		dr := runDB(ctx, cfg, kind, suffix, log.With("db", kind))
		res.DBs = append(res.DBs, dr)
		if dr.Skipped != "" && len(cfg.DBs) == 1 {
			errs = append(errs, fmt.Errorf("%s: %s", kind, dr.Skipped))
		}
		if len(dr.Errors) > 0 {
			errs = append(errs, fmt.Errorf("%s: %d workload error(s), see the results", kind, len(dr.Errors)))
		}
	}
	if ctx.Err() == nil && cfg.wantLocker(lkRedis) && cfg.wantWorkload(wlHandoff) {
		res.Redis = runRedis(ctx, cfg, suffix, log.With("db", "redis"))
	}
	res.Finished = time.Now()
	return res, errors.Join(append(errs, ctx.Err())...)
}

// runDB runs the workloads on one database and always drops its tables.
func runDB(ctx context.Context, cfg *config, kind, suffix string, log *slog.Logger) *dbResult {
	dr := &dbResult{Kind: kind, Title: dbTitle[kind]}
	dsn := map[string]string{dbPostgres: cfg.PGDSN, dbMySQL: cfg.MySQLDSN}[kind]
	if kind == dbSQLite {
		path := sqlitePath(cfg.SQLiteDir, suffix)
		dsn = sqliteDSN(path)
		defer removeSQLite(path)
	}
	conns := slices.Max(append(slices.Clone(cfg.Concs), cfg.HandoffWorkers, cfg.HandoffLocal, cfg.TableConc, 4)) + 4
	t, err := openTarget(ctx, kind, dsn, conns)
	if err != nil {
		dr.Skipped = err.Error()
		log.Warn("skipped", "err", err)
		return dr
	}
	defer t.close()
	t.tables, t.salt = newTableNames(suffix), "b"+suffix
	dr.Version = t.version
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := t.dropTables(cctx); err != nil {
			log.Warn("cleanup", "err", err)
		}
	}()
	lockers := map[string]locker{}
	defer func() {
		for _, l := range lockers {
			_ = l.close()
		}
	}()
	opts := lockerOpts{DjangoPoll: cfg.DjangoPoll, RedisAddr: cfg.RedisAddr, Conns: conns}
	for _, label := range allLockers {
		if !cfg.wantLocker(label) || (label == lkNative && kind == dbSQLite) || (label == lkNotify && kind != dbPostgres) {
			continue
		}
		l, err := buildLocker(ctx, t, label, opts, true)
		if err != nil {
			dr.Notes = append(dr.Notes, fmt.Sprintf("%s left out: %v", label, err))
			log.Warn("locker left out", "locker", label, "err", err)
			continue
		}
		lockers[label] = l
		if ll, ok := l.(*lockmgrLocker); ok && ll.waker != "backoff" {
			dr.Waker = ll.waker
		}
		if rl, ok := l.(*redisLocker); ok {
			dr.RedisVersion = rl.version(ctx)
		}
	}
	r := &runner{cfg: cfg, t: t, lockers: lockers, res: dr, log: log, conns: conns}
	steps := map[string]func(context.Context) error{
		wlCycle: r.cycle, wlSetLock: r.setLock, wlHandoff: r.handoff, wlSoak: r.soak, wlTable: r.tableSize,
	}
	for _, w := range allWorkloads {
		if !cfg.wantWorkload(w) || ctx.Err() != nil {
			continue
		}
		start := time.Now()
		if err := steps[w](ctx); err != nil {
			dr.Errors = append(dr.Errors, fmt.Sprintf("%s: %v", w, err))
			log.Error("workload failed", "workload", w, "err", err)
		}
		r.shrinkPools()
		log.Info("workload done", "workload", w, "took", time.Since(start).Round(time.Millisecond))
	}
	return dr
}

// runRedis measures redislock's hand-off once (its cycle runs next to each
// database's lockers).
func runRedis(ctx context.Context, cfg *config, suffix string, log *slog.Logger) *redisResult {
	rr := &redisResult{}
	rl, err := newRedisLocker(ctx, cfg.RedisAddr, "b"+suffix, max(cfg.HandoffWorkers, cfg.HandoffLocal)+4)
	if err != nil {
		rr.Skipped = err.Error()
		log.Warn("skipped", "err", err)
		return rr
	}
	defer rl.close()
	rr.Version = rl.version(ctx)
	spec := handoffSpec{Locker: lkRedis, Salt: "b" + suffix, Name: "handoff-redis", TTL: cfg.TTL,
		Hold: cfg.Hold, Think: cfg.Think, RedisAddr: cfg.RedisAddr}
	log.Info("workload: contended hand-off", "lockers", lkRedis)
	res, err := handoffInProcess(ctx, rl, spec, cfg.HandoffLocal, cfg.HandoffDur)
	res.Locker = lkRedis
	res.fail(err)
	rr.Handoff = append(rr.Handoff, res)
	if err != nil {
		rr.Errors = append(rr.Errors, err.Error())
		return rr
	}
	if cfg.CrossProcess {
		spec.Name += "-x"
		res, err = handoffProcesses(ctx, spec, cfg.HandoffWorkers, cfg.HandoffDur)
		res.Locker = lkRedis
		res.fail(err)
		rr.Handoff = append(rr.Handoff, res)
		if err != nil {
			rr.Errors = append(rr.Errors, err.Error())
		}
	}
	return rr
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
