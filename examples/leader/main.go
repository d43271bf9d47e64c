// Command leader elects one leader among several replicas of itself with
// lockmgr.Election: each replica runs the election, the winner leads
// until its lead context is cancelled (shutdown, or leadership lost or in
// doubt), and every replica observes who leads. Each term has a fence, and
// the leader's writes carry it: the shared ledger refuses a write whose
// fence is older than the last one it accepted.
//
//	go run ./examples/leader              # three replicas; the first leader is killed after 4 s
//	go run ./examples/leader -replicas 1  # one replica until Ctrl-C: start several, kill the leader
//
// A leader that is killed does not release its lock: another replica takes
// over once it expires (-ttl after the last renewal, 3 s by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	dsn, table, ledger, name     string
	replicas                     int
	ttl, beat, killAfter, runFor time.Duration
}

// lockName is the lock whose holder leads.
const lockName = "leader"

func run(ctx context.Context, out io.Writer, args []string) error {
	var c config
	fs := flag.NewFlagSet("leader", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.dsn, "dsn", "lockmgr-leader.db", demo.DSNHelp)
	fs.StringVar(&c.table, "table", lockmgr.DefaultTable, "the lock table")
	fs.StringVar(&c.ledger, "ledger", "demo_leader_ledger", "the table the leaders write to, fenced")
	fs.IntVar(&c.replicas, "replicas", 3, "start this many copies of this program; 1: be one replica")
	fs.DurationVar(&c.ttl, "ttl", 3*time.Second, "the leader lock's expiry; it is renewed every third of it")
	fs.DurationVar(&c.beat, "beat", time.Second, "how often the leader does a unit of work")
	fs.DurationVar(&c.killAfter, "kill-after", 4*time.Second, "with -replicas > 1: kill the first leader after this long; 0: never")
	fs.DurationVar(&c.runFor, "run-for", 12*time.Second, "with -replicas > 1: stop everything after this long; 0: until interrupted")
	fs.StringVar(&c.name, "name", defaultName(), "this replica's name, recorded as the lock's holder")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.replicas < 1 || c.ttl <= 0 || c.beat <= 0 || c.killAfter < 0 || c.runFor < 0 {
		return errors.New("-replicas must be at least 1, -ttl and -beat positive, -kill-after and -run-for not negative")
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
	if err := prepare(ctx, db.DB, m, c.ledger); err != nil {
		return err
	}
	p := demo.NewPrinter(out, true)
	if c.replicas == 1 {
		return replica(ctx, &node{m: m, db: db.DB, p: p, c: &c})
	}
	return supervise(ctx, db.DB, p, db.Where, &c)
}

// prepare creates the lock table and the ledger, with its one row.
func prepare(ctx context.Context, db *gorm.DB, m *lockmgr.Manager, ledger string) error {
	if err := m.AutoMigrate(ctx); err != nil {
		return err
	}
	db = db.WithContext(ctx).Table(ledger)
	if err := db.AutoMigrate(&Ledger{}); err != nil {
		return err
	}
	return db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Ledger{ID: 1}).Error
}

func defaultName() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// Ledger is the one row the leaders write: the fence of the newest term
// that wrote, who wrote, and how many units of work were done in all.
type Ledger struct {
	ID     uint
	Fence  int64
	Leader string
	Beats  int64
}

// node is one replica.
type node struct {
	m      *lockmgr.Manager
	db     *gorm.DB
	p      *demo.Printer
	c      *config
	e      *lockmgr.Election
	leader atomic.Bool // lead was running when ctx ended
}

// replica runs one member of the election until ctx ends: lockmgr
// campaigns, calls lead for each term it wins, and releases the lock
// once lead has returned. Meanwhile it prints each new leader it observes.
func replica(ctx context.Context, n *node) error {
	var err error
	n.e, err = lockmgr.NewElection(n.m, lockName, lockmgr.Identity(n.c.name), lockmgr.TTL(n.c.ttl))
	if err != nil {
		return err
	}
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		for t := range n.e.Observe(ctx) {
			if t.Identity != "" && t.Identity != n.c.name {
				n.p.Printf("%-10s follower; %s leads (fence %d)", n.c.name, t.Identity, t.Fence)
			}
		}
	}()
	err = n.e.Run(ctx, n.lead)
	<-followed
	if ctx.Err() == nil {
		return err
	}
	if n.leader.Load() {
		n.p.Printf("%-10s shutting down; released the lock", n.c.name)
	}
	return nil
}

// lead works until its context is cancelled: at shutdown, or the moment
// leadership is lost or in doubt. It checks the context before each unit
// of work, and each is a write fenced by the term's fence, so that even a
// write that was under way when leadership ended cannot land after the
// next leader's.
func (n *node) lead(ctx context.Context, term lockmgr.Term) error {
	n.p.Printf("%-10s LEADER, term fence %d", n.c.name, term.Fence)
	t := time.NewTicker(n.c.beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), lockmgr.ErrLockLost) {
				n.p.Printf("%-10s lost the lock; following again", n.c.name)
			} else {
				n.leader.Store(true)
			}
			return nil
		case <-t.C:
		}
		if ctx.Err() != nil {
			continue // the next turn of the loop says why
		}
		beats, err := n.work(ctx, term.Fence)
		switch {
		case errors.Is(err, errStale):
			n.p.Printf("%-10s the ledger refused fence %d: a newer leader wrote; stepping down", n.c.name, term.Fence)
			return n.e.Resign(ctx)
		case err != nil && ctx.Err() == nil:
			n.p.Printf("%-10s work failed: %v", n.c.name, err)
		case err == nil:
			n.p.Printf("%-10s leader (fence %d): unit of work %d done", n.c.name, term.Fence, beats)
		}
	}
}

var errStale = errors.New("stale fence")

// work records one unit of work in the ledger, unless a leader with a
// newer fence has written there: the storage, not the lock, has the last
// word on who may write.
func (n *node) work(ctx context.Context, fence int64) (int64, error) {
	db := n.db.WithContext(ctx).Table(n.c.ledger)
	res := db.Where("id = 1 AND fence <= ?", fence).
		Updates(map[string]any{"fence": fence, "leader": n.c.name, "beats": gorm.Expr("beats + 1")})
	if res.Error != nil {
		return 0, res.Error
	}
	if res.RowsAffected == 0 {
		return 0, errStale
	}
	var beats int64
	err := n.db.WithContext(ctx).Table(n.c.ledger).Select("beats").Where("id = 1").Scan(&beats).Error
	return beats, err
}
