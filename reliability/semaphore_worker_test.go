package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// semEvent is one row of the semaphore torture's ledger, a table every
// worker (and the parent, for a worker it killed) appends to. Its
// auto-increment id orders the rows across processes: a row inserted
// after another one committed gets a larger id. A worker inserts "begin"
// after its acquisition returned and "end" before it releases, so the
// holds the ledger sees lie within the database's. At is the writer's
// wall clock (one host, one clock), used only to measure delays.
type semEvent struct {
	ID    int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Proc  int    `gorm:"column:proc;not null"`
	Pid   int    `gorm:"column:pid;not null"`
	Kind  string `gorm:"column:kind;size:8;not null"` // begin, end, lost, killed
	Slot  string `gorm:"column:slot;size:64;not null"`
	Fence int64  `gorm:"column:fence;not null"`
	At    int64  `gorm:"column:at_us;not null"`
}

// semConfig is what a semaphore worker is told.
type semConfig struct {
	childTarget
	// NodeDSN, when set, is the cluster node the worker's lock calls go
	// to (Galera); the ledger stays on DSN, one server.
	NodeDSN  string
	Ledger   string
	Name     string
	Slots    int // the size the worker gives NewSemaphore
	Proc     int
	Deadline int64 // Unix microseconds: stop taking slots then
	Expires  time.Duration
	Seed     uint64
}

// semStats is what a worker prints on its last line of stdout.
type semStats struct {
	Holds, Timeouts, Lost int
	Unexpected            map[string]int
}

// runSemaphoreChild loops Semaphore.Do until the deadline: each hold
// writes begin, works 10-40 ms, writes end; then 20-120 ms of think time.
func runSemaphoreChild(raw string) int {
	var cfg semConfig
	_, ledger, code := openChild(raw, &cfg, &cfg.childTarget)
	if code != 0 {
		return code
	}
	m, err := semManager(cfg, ledger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sem, err := lockmgr.NewSemaphore(m, cfg.Name, cfg.Slots)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(os.Getpid())))
	st := semStats{Unexpected: map[string]int{}}
	for time.Now().UnixMicro() < cfg.Deadline {
		err := sem.Do(context.Background(), func(ctx context.Context, sc *lockmgr.Scope) error {
			return semHold(ctx, ledger, cfg, sc.Main(), time.Duration(10+rng.IntN(30))*time.Millisecond)
		}, lockmgr.Expires(cfg.Expires), lockmgr.Wait(10*time.Second))
		// Think time between holds: a worker that asked again at once would
		// mostly re-take the slot it just released, before a waiter of
		// another process woke (lockmgr's waits are not a fair queue).
		time.Sleep(time.Duration(20+rng.IntN(100)) * time.Millisecond)
		switch {
		case err == nil:
			st.Holds++
		case errors.Is(err, lockmgr.ErrLockLost):
			st.Lost++
		case errors.Is(err, lockmgr.ErrLocked):
			st.Timeouts++
		default:
			st.Unexpected[short(err.Error())]++
		}
	}
	out, _ := json.Marshal(st)
	fmt.Println(string(out))
	return 0
}

// semManager is the worker's Manager: on cfg.NodeDSN when set, else on
// the ledger's database.
func semManager(cfg semConfig, ledger *gorm.DB) (*lockmgr.Manager, error) {
	db := ledger
	if cfg.NodeDSN != "" {
		var err error
		if db, err = openDB(cfg.Driver, cfg.NodeDSN); err != nil {
			return nil, err
		}
	}
	return lockmgr.New(db, lockmgr.WithTable(cfg.LockTable))
}

// semHold is one hold: begin, work, end. A lost slot (ctx cancelled)
// ends the hold at once, with a "lost" row: the worker stopped its work
// when it learned of the loss, and the parent counts the loss.
func semHold(ctx context.Context, ledger *gorm.DB, cfg semConfig, l *lockmgr.Lock, work time.Duration) error {
	if err := semLog(ledger, cfg, "begin", l.Name, l.Fence); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return errors.Join(context.Cause(ctx), semLog(ledger, cfg, "lost", l.Name, l.Fence))
	case <-time.After(work):
	}
	return semLog(ledger, cfg, "end", l.Name, l.Fence)
}

// semLog appends one row to the ledger, retrying what a busy SQLite or a
// certification conflict turns away.
func semLog(ledger *gorm.DB, cfg semConfig, kind, slot string, fence int64) error {
	ev := semEvent{Proc: cfg.Proc, Pid: os.Getpid(), Kind: kind, Slot: slot, Fence: fence}
	var err error
	for range 20 {
		ev.ID, ev.At = 0, time.Now().UnixMicro()
		if err = ledger.Table(cfg.Ledger).Create(&ev).Error; err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("ledger: %w", err)
}
