package reliability

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// shutdownEvent is one row of the shutdown test's ledger, a table that
// every process of a round appends to. Its auto-increment id orders the
// rows across processes: a row inserted after another one committed gets
// a larger id, whatever the processes' clocks say. At is the writer's
// wall clock (one host, one clock), used only to measure delays.
type shutdownEvent struct {
	ID    int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Round int    `gorm:"column:rnd;not null;index"`
	Who   string `gorm:"column:who;size:16;not null"`
	What  string `gorm:"column:what;size:16;not null"`
	At    int64  `gorm:"column:at_ns;not null"`
}

// shutdownConfig is what a shutdown worker is told. Role is one of
//
//	do:      the replica under test: Do(ctx from SIGTERM, Name, work)
//	early:   the control: Acquire, and Close as soon as SIGTERM arrives
//	         while the same work goes on (lockmgr before Do kept the lock)
//	poll:    a contender polling GetLock every 10 ms
//	wait:    a contender looping Do with Wait(100 ms)
type shutdownConfig struct {
	childTarget
	Ledger, Name string
	Round        int
	Who, Role    string
	Expires      time.Duration // of every lock the worker takes
	Work         time.Duration // how long the holder works on after SIGTERM
}

// shutdownTick is how often a holder writes to the ledger.
const shutdownTick = 20 * time.Millisecond

type shutdownWorker struct {
	db  *gorm.DB
	m   *lockmgr.Manager
	cfg shutdownConfig
}

// runShutdownChild runs one role until it is done (a holder) or SIGTERM
// (a contender), then prints "exit ok" or "exit <error>".
func runShutdownChild(raw string) int {
	var cfg shutdownConfig
	m, db, code := openChild(raw, &cfg, &cfg.childTarget)
	if code != 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	w := &shutdownWorker{db: db, m: m, cfg: cfg}
	var err error
	switch cfg.Role {
	case "do":
		err = w.holdDo(ctx)
	case "early":
		err = w.holdEarly(ctx)
	case "poll", "wait":
		err = w.contend(ctx)
	default:
		err = fmt.Errorf("unknown role %q", cfg.Role)
	}
	if err != nil {
		fmt.Printf("exit %v\n", short(err.Error()))
		return 1
	}
	fmt.Println("exit ok")
	return 0
}

// note appends an event to the ledger, on a context of its own: a holder
// told to stop still records what it does.
func (w *shutdownWorker) note(what string, at time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := shutdownEvent{Round: w.cfg.Round, Who: w.cfg.Who, What: what, At: at.UnixNano()}
	if err := w.db.WithContext(ctx).Table(w.cfg.Ledger).Create(&ev).Error; err != nil {
		return fmt.Errorf("ledger %s: %w", what, err)
	}
	return nil
}

// holdDo is the replica under test: the lock is Do's, fn ignores nothing.
func (w *shutdownWorker) holdDo(ctx context.Context) error {
	return w.m.Do(ctx, w.cfg.Name, func(sctx context.Context, s *lockmgr.Scope) error {
		return w.work(sctx, s.Main().Token)
	}, lockmgr.Expires(w.cfg.Expires))
}

// holdEarly is the control: it releases the lock the moment the signal
// arrives, as a scope bound to the caller's context did, while the work
// goes on exactly as holdDo's.
func (w *shutdownWorker) holdEarly(ctx context.Context) error {
	s, err := w.m.Acquire(ctx, w.cfg.Name, lockmgr.Expires(w.cfg.Expires))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	err = w.work(ctx, s.Main().Token)
	return errors.Join(err, s.Close())
}

// work is the job: it records "in" and prints "in <token>", writes to the
// ledger until ctx ends, then, as a job told to stop finishes what it is
// doing, records "cancelled", writes on for cfg.Work and records "done".
func (w *shutdownWorker) work(ctx context.Context, token string) error {
	if err := w.note("in", time.Now()); err != nil {
		return err
	}
	fmt.Printf("in %s\n", token)
	for ctx.Err() == nil {
		if err := w.note("write", time.Now()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(shutdownTick):
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, lockmgr.ErrLockLost) {
		return fmt.Errorf("fn's context ended by %w, not by SIGTERM", cause)
	}
	if err := w.note("cancelled", time.Now()); err != nil {
		return err
	}
	for end := time.Now().Add(w.cfg.Work); time.Now().Before(end); time.Sleep(shutdownTick) {
		if err := w.note("write", time.Now()); err != nil {
			return err
		}
	}
	return w.note("done", time.Now())
}

// contend tries the name until SIGTERM, printing "trying" at its first
// refusal; each hold is recorded as "in" and "out" 30 ms later.
func (w *shutdownWorker) contend(ctx context.Context) error {
	tried := false
	for ctx.Err() == nil {
		err := w.tryOnce(ctx)
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, lockmgr.ErrLocked):
			if !tried {
				fmt.Println("trying")
				tried = true
			}
			if w.cfg.Role == "poll" {
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		default:
			return err
		}
	}
	return nil
}

func (w *shutdownWorker) tryOnce(ctx context.Context) error {
	opt := lockmgr.Expires(w.cfg.Expires)
	if w.cfg.Role == "wait" {
		return w.m.Do(ctx, w.cfg.Name, func(context.Context, *lockmgr.Scope) error {
			return w.briefHold(time.Now())
		}, opt, lockmgr.Wait(100*time.Millisecond))
	}
	l, err := w.m.GetLock(ctx, w.cfg.Name, opt)
	if err != nil {
		return err
	}
	at := time.Now()
	return errors.Join(w.briefHold(at), w.m.Release(context.WithoutCancel(ctx), l))
}

func (w *shutdownWorker) briefHold(at time.Time) error {
	if err := w.note("in", at); err != nil {
		return err
	}
	time.Sleep(30 * time.Millisecond)
	return w.note("out", time.Now())
}
