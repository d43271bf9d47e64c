// Command cron runs a gocron job once per tick across several replicas of
// itself, with gocronlock: every replica schedules the job, and on each
// tick one of them runs it while the others skip it.
//
//	go run ./examples/cron                       # three replicas for five seconds
//	go run ./examples/cron -replicas 1 -for 0    # one replica, until interrupted: start it in several terminals
//
// The lock of a tick is held for half the interval at least, so a replica
// whose scheduler fires late (-late) skips a tick already run, and for
// three quarters of it at most, so a crashed runner does not hold back the
// next tick (gocronlock.Interval's defaults).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
	"github.com/gormlock/lockmgr/gocronlock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cron:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	dsn, table, name string
	replicas         int
	every, length    time.Duration
	late, lag        time.Duration
}

func run(ctx context.Context, out io.Writer, args []string) error {
	var c config
	fs := flag.NewFlagSet("cron", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.dsn, "dsn", "lockmgr-cron.db", demo.DSNHelp)
	fs.StringVar(&c.table, "table", lockmgr.DefaultTable, "the lock table")
	fs.IntVar(&c.replicas, "replicas", 3, "start this many copies of this program; 1: be one replica")
	fs.DurationVar(&c.length, "for", 5*time.Second, "stop after this long; 0: run until interrupted")
	fs.DurationVar(&c.every, "every", time.Second, "the schedule: one run per tick of this length")
	fs.DurationVar(&c.late, "late", 300*time.Millisecond, "how far behind the last replica's scheduler runs")
	fs.DurationVar(&c.lag, "lag", 0, "how far behind this replica's scheduler runs (-replicas 1)")
	fs.StringVar(&c.name, "name", "replica", "this replica's name, recorded as the lock's holder")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.replicas < 1 || c.every <= 0 || c.length < 0 || c.late < 0 || c.lag < 0 {
		return errors.New("-replicas must be at least 1, -every positive, -for and -late not negative")
	}
	db, err := demo.Open(c.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := lockmgr.New(db.DB, lockmgr.WithTable(c.table), lockmgr.WithOwner(c.name))
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
	return supervise(ctx, p, db.Where, &c)
}

// lagging is a clock that reads behind the real one: a replica whose
// scheduler fires each tick late.
type lagging struct {
	clockwork.Clock
	lag time.Duration
}

func (c lagging) Now() time.Time                  { return c.Clock.Now().Add(-c.lag) }
func (c lagging) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c lagging) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// replica schedules the job "report" every c.every, under gocronlock's
// Locker, until ctx ends or c.length has passed.
func replica(ctx context.Context, m *lockmgr.Manager, p *demo.Printer, c *config) error {
	locker, err := gocronlock.NewLocker(m, gocronlock.Interval(c.every))
	if err != nil {
		return err
	}
	// The Manager checks its table on its first call (a few hundred ms):
	// make it before the scheduler starts, so that no tick's lock waits
	// for it and falls outside the hold of the replica that ran the tick.
	if _, err := m.IsLocked(ctx, "gocron:report"); err != nil {
		return err
	}
	clock := lagging{clockwork.NewRealClock(), c.lag}
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker), gocron.WithClock(clock))
	if err != nil {
		return err
	}
	first := clock.Now().Truncate(c.every).Add(c.every)
	tick := func() string { return clock.Now().Round(c.every).Format("15:04:05.000") }
	skipped := gocron.AfterLockError(func(_ uuid.UUID, _ string, err error) {
		if errors.Is(err, lockmgr.ErrLocked) {
			p.Printf("%-10s tick %s  skipped: another replica ran it", c.name, tick())
		} else {
			p.Printf("%-10s tick %s  error: %v", c.name, tick(), err)
		}
	})
	_, err = s.NewJob(gocron.DurationJob(c.every), gocron.NewTask(func() {
		p.Printf("%-10s tick %s  RUNS the job", c.name, tick())
	}), gocron.WithName("report"), gocron.WithStartAt(gocron.WithStartDateTime(first)), gocron.WithEventListeners(skipped))
	if err != nil {
		return err
	}
	s.Start()
	if c.length > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.length)
		defer cancel()
	}
	<-ctx.Done()
	err = s.Shutdown()
	cctx, cancel := context.WithTimeout(context.Background(), c.every)
	defer cancel()
	_ = locker.Close(cctx) // the last tick's row goes once its hold has passed
	return err
}
