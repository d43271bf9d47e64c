// Command cronjob runs a job once per tick across several replicas of
// itself: every replica wakes on each tick, and the one that takes the
// tick's lock runs the job while the others skip it.
//
//	go run ./examples/cronjob                 # three replicas, five ticks
//	go run ./examples/cronjob -replicas 1 -ticks 0   # one replica, forever: start it in several terminals
//
// Each tick has its own lock name ("cronjob:report@<tick time>"), held for
// ten ticks after it ran and never released early, so a replica that wakes
// late cannot run a tick that another replica already ran.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cronjob:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	dsn, table, name string
	replicas, ticks  int
	every, jobTime   time.Duration
}

// jobPrefix starts the name of every tick's lock.
const jobPrefix = "cronjob:report@"

func run(ctx context.Context, out io.Writer, args []string) error {
	var c config
	fs := flag.NewFlagSet("cronjob", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.dsn, "dsn", "lockmgr-cronjob.db", demo.DSNHelp)
	fs.StringVar(&c.table, "table", lockmgr.DefaultTable, "the lock table")
	fs.IntVar(&c.replicas, "replicas", 3, "start this many copies of this program; 1: be one replica")
	fs.IntVar(&c.ticks, "ticks", 5, "stop after this many ticks; 0: run until interrupted")
	fs.DurationVar(&c.every, "every", 2*time.Second, "the schedule: one run per tick of this length")
	fs.DurationVar(&c.jobTime, "job-time", 300*time.Millisecond, "how long the pretend job takes")
	fs.StringVar(&c.name, "name", defaultName(), "this replica's name, recorded as the lock's holder")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.replicas < 1 || c.ticks < 0 || c.every <= 0 || c.jobTime < 0 {
		return errors.New("-replicas must be at least 1, -every positive, -ticks and -job-time not negative")
	}
	db, err := demo.Open(c.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := lockmgr.New(db.DB, lockmgr.WithTable(c.table))
	if err != nil {
		return err
	}
	if err := m.AutoMigrate(ctx); err != nil {
		return err
	}
	p := demo.NewPrinter(out, false)
	if c.replicas == 1 {
		return replica(ctx, m, p, &c)
	}
	return supervise(ctx, m, p, db.Where, &c)
}

func defaultName() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// replica wakes on every tick and runs the job if it takes the tick's lock.
func replica(ctx context.Context, m *lockmgr.Manager, p *demo.Printer, c *config) error {
	next := time.Now().Truncate(c.every).Add(c.every)
	for i := 0; c.ticks == 0 || i < c.ticks; i++ {
		if !sleepUntil(ctx, next) {
			return nil // interrupted: stop quietly between ticks
		}
		tick := next
		next = next.Add(c.every)
		if err := runTick(ctx, m, p, c, tick); err != nil && ctx.Err() == nil {
			p.Printf("%-10s tick %s  error: %v", c.name, label(tick), err)
		}
	}
	return nil
}

// runTick is one replica's part in one tick.
func runTick(ctx context.Context, m *lockmgr.Manager, p *demo.Printer, c *config, tick time.Time) error {
	name := jobPrefix + tick.UTC().Format(tickLayout)
	l, err := m.GetLock(ctx, name, lockmgr.Expires(10*c.every), lockmgr.LockedBy(c.name))
	if errors.Is(err, lockmgr.ErrLocked) {
		p.Printf("%-10s tick %s  skipped: %s runs it", c.name, label(tick), holder(ctx, m, name))
		return nil
	}
	if err != nil {
		return err
	}
	p.Printf("%-10s tick %s  RUNS the job (fence %d)", c.name, label(tick), l.Fence)
	if !sleepUntil(ctx, time.Now().Add(c.jobTime)) {
		return ctx.Err()
	}
	// The lock is kept until it expires: releasing it now would let a
	// replica that wakes late run this tick a second time. Tidy up the
	// locks of old ticks instead.
	_, err = m.CleanLocks(ctx)
	return err
}

// holder names who holds name.
func holder(ctx context.Context, m *lockmgr.Manager, name string) string {
	if l, err := m.Get(ctx, name); err == nil {
		return l.LockedBy
	}
	return "another replica"
}

// tickLayout is how a tick's time is written in its lock's name.
const tickLayout = "2006-01-02T15:04:05.000Z07:00"

func label(t time.Time) string { return t.Format("15:04:05.000") }

// sleepUntil sleeps until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// supervise starts c.replicas copies of this program as replicas, relays
// what they print, and when they are done shows the lock table's record of
// who ran each tick. An interrupt reaches the replicas directly from the
// terminal; a cancelled ctx interrupts them too.
func supervise(ctx context.Context, m *lockmgr.Manager, p *demo.Printer, where string, c *config) error {
	start := time.Now()
	p.Printf("Starting %d replicas on %s, one tick every %s.", c.replicas, where, c.every)
	p.Printf("Each tick, exactly one replica runs the job; the others skip it.")
	p.Printf("")
	err := demo.RunReplicas(ctx, p, c.replicas, func(_ int, name string) []string {
		return []string{"-dsn", c.dsn, "-table", c.table, "-replicas", "1", "-name", name,
			"-ticks", fmt.Sprint(c.ticks), "-every", c.every.String(), "-job-time", c.jobTime.String()}
	})
	if err != nil || ctx.Err() != nil {
		return err
	}
	return summary(ctx, m, p, start)
}

// summary prints the tick locks taken since start: one row per tick, and
// its locked_by is the replica that ran it.
func summary(ctx context.Context, m *lockmgr.Manager, p *demo.Printer, start time.Time) error {
	locks, err := m.List(ctx)
	if err != nil {
		return err
	}
	p.Printf("")
	p.Printf("The lock table holds one row per tick, naming the replica that ran it:")
	runs := map[string]int{}
	for _, l := range locks {
		tick, err := time.Parse(tickLayout, strings.TrimPrefix(l.Name, jobPrefix))
		if !strings.HasPrefix(l.Name, jobPrefix) || err != nil || tick.Before(start) {
			continue // another run's tick
		}
		runs[l.LockedBy]++
		p.Printf("  %-40s locked_by=%s", l.Name, l.LockedBy)
	}
	var per []string
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		per = append(per, fmt.Sprintf("%s ran %d", name, runs[name]))
	}
	p.Printf("")
	p.Printf("Runs per replica: %s.", strings.Join(per, ", "))
	return nil
}
