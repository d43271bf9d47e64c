package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// electionWrite is one row of the election torture's ledger: a leader's
// unit of work, written with its term's fence. The ledger lives on one
// server (Galera: node 1), so its auto-increment id orders the rows as
// that server committed them. Check is the host's CLOCK_MONOTONIC read
// just before the writer checked its lead context: every process of the
// test shares that clock, and the parent uses it to tell a write checked
// after a pause from one paused between its check and its commit.
type electionWrite struct {
	ID    int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Fence int64  `gorm:"column:fence;not null;index"`
	Who   string `gorm:"column:who;size:32;not null"`
	Phase string `gorm:"column:phase;size:8;not null"` // "work", or "drain" after SIGTERM
	Check int64  `gorm:"column:check_ns;not null"`
}

// electionWorkerConfig is what an election member is told.
type electionWorkerConfig struct {
	Driver, LockDSN, LedgerDSN string // the member's node for lock calls; the ledger's server
	LockTable, Ledger, Name    string
	Who                        string
	TTL, Tick, Drain           time.Duration
	// Control makes lead ignore its context: it writes until the process
	// ends, as a leader that never checks would.
	Control bool
}

// electionWorker is one member process. It prints, one per line:
//
//	ready                 the member campaigns
//	lead <fence>          it won a term
//	observed <fence> <who> its Observe saw a term (fence 0: no leader)
//	resigned <error|ok>   Resign (SIGUSR1) returned
//	slow <id> <ns>        a write took longer than TTL/5 from check to commit
//	exit <ok|error>       Run returned (SIGTERM: after lead drained)
type electionWorker struct {
	cfg    electionWorkerConfig
	ledger *gorm.DB
	el     *lockmgr.Election
	outMu  sync.Mutex
}

func (w *electionWorker) printf(format string, args ...any) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func runElectionChild(raw string) int {
	var cfg electionWorkerConfig
	w := &electionWorker{}
	if code := w.open(raw, &cfg); code != 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	obsCtx, endObserve := context.WithCancel(context.Background())
	defer endObserve()
	go func() {
		for t := range w.el.Observe(obsCtx) {
			w.printf("observed %d %s", t.Fence, t.Identity)
		}
	}()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			w.printf("resigned %v", orOK(w.el.Resign(context.Background())))
		}
	}()
	w.printf("ready")
	err := w.el.Run(ctx, w.lead)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	w.printf("exit %s", short(orOK(err)))
	if err != nil {
		return 1
	}
	return 0
}

func orOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (w *electionWorker) open(raw string, cfg *electionWorkerConfig) int {
	if err := decodeConfig(raw, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	w.cfg = *cfg
	lockDB, err := openDB(cfg.Driver, cfg.LockDSN)
	if err == nil {
		w.ledger, err = openDB(cfg.Driver, cfg.LedgerDSN)
	}
	var m *lockmgr.Manager
	if err == nil {
		m, err = lockmgr.New(lockDB, lockmgr.WithTable(cfg.LockTable))
	}
	if err == nil {
		w.el, err = lockmgr.NewElection(m, cfg.Name, lockmgr.Identity(cfg.Who), lockmgr.TTL(cfg.TTL))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// lead writes a row every Tick while its context lives, checking it
// before each write. Lost leadership (cause ErrLockLost) stops it at
// once; SIGTERM (its context ending otherwise) lets it finish its last
// batch, Drain long, as a replica told to stop does: Run keeps the lock
// until lead returns.
func (w *electionWorker) lead(ctx context.Context, t lockmgr.Term) error {
	w.printf("lead %d", t.Fence)
	tick := time.NewTicker(w.cfg.Tick)
	defer tick.Stop()
	for {
		check := monoNow()
		if err := ctx.Err(); err != nil && !w.cfg.Control {
			if errors.Is(context.Cause(ctx), lockmgr.ErrLockLost) {
				return err
			}
			return w.drain(t, tick)
		}
		w.write(t.Fence, "work", check)
		<-tick.C
	}
}

// drain finishes the last batch after SIGTERM. lead's context is already
// cancelled, so it cannot say that leadership was lost meanwhile: Leading
// does, checked before each write.
func (w *electionWorker) drain(t lockmgr.Term, tick *time.Ticker) error {
	for end := time.Now().Add(w.cfg.Drain); time.Now().Before(end); <-tick.C {
		check := monoNow()
		if _, ok := w.el.Leading(); !ok {
			w.printf("drain stopped: leadership lost")
			break
		}
		w.write(t.Fence, "drain", check)
	}
	return context.Canceled
}

// write appends a row; one that took longer than a fifth of the TTL from
// its check to its commit (the margin a passed check leaves) is printed
// as "slow <id> <ns>": a lead context cannot cover it (use Guard).
func (w *electionWorker) write(fence int64, phase string, check int64) {
	row := electionWrite{Fence: fence, Who: w.cfg.Who, Phase: phase, Check: check}
	if err := w.ledger.Table(w.cfg.Ledger).Create(&row).Error; err != nil {
		fmt.Fprintln(os.Stderr, "ledger write:", err)
		return
	}
	if took := monoNow() - check; took > int64(w.cfg.TTL/5) {
		w.printf("slow %d %d", row.ID, took)
	}
}
