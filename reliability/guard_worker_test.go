package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// guardConfig is what one stale-writer worker process is told.
type guardConfig struct {
	childTarget
	Ledger   string
	Name     string
	Worker   int
	Expires  time.Duration
	Duration time.Duration
	Guard    bool // write through Manager.Guard; else a plain write (the control)
}

// guardWrite is one row of the stale-writer ledger: a write under the
// lock, by the holder of fence.
type guardWrite struct {
	ID     int64 `gorm:"primaryKey;autoIncrement"`
	Fence  int64 `gorm:"index"`
	Worker int
}

// guardStats is what a worker reports on its last line.
type guardStats struct {
	Holds, Writes, NotHeld, Skipped int64
	// Conflicts are guarded writes the database aborted at commit for
	// racing a takeover (Galera certification, TiDB write conflicts): the
	// other way a stale write is refused.
	Conflicts  int64
	Unexpected map[string]int64
}

// guardPause is the window between a holder's last check and its write,
// where the parent stops it (a GC pause, a stopped VM, a slow disk).
const guardPause = 150 * time.Millisecond

// runGuardChild is the stale-writer worker: it takes the name, works,
// checks that its lock has not expired, says "ready <fence>" (the parent
// may SIGSTOP it now, past its expiry), waits guardPause, and writes its
// fence to the ledger, guarded or not; until its duration ends. A guarded
// worker also says "guarded <fence>" inside its transaction, after the
// guard, and waits guardPause again before writing.
func runGuardChild(raw string) int {
	var cfg guardConfig
	m, db, code := openChild(raw, &cfg, &cfg.childTarget)
	if code != 0 {
		return code
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	st := guardStats{Unexpected: map[string]int64{}}
	ctx := context.Background()
	for end := time.Now().Add(cfg.Duration); time.Now().Before(end); {
		l, err := m.GetLock(ctx, cfg.Name, lockmgr.Expires(cfg.Expires))
		if err != nil {
			if !errors.Is(err, lockmgr.ErrLocked) {
				st.Unexpected["lock: "+short(err.Error())]++
			}
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
			continue
		}
		st.Holds++
		cfg.hold(ctx, m, db, l, &st)
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
	raw2, _ := json.Marshal(st)
	fmt.Printf("stats %s\n", raw2)
	return 0
}

// hold is one hold of the name: work, the last check, the pause window,
// the write, the release.
func (cfg *guardConfig) hold(ctx context.Context, m *lockmgr.Manager, db *gorm.DB, l *lockmgr.Lock, st *guardStats) {
	time.Sleep(20 * time.Millisecond) // work
	if left, ok := l.ExpiresIn(); !ok || left < guardPause*2 {
		st.Skipped++ // the lock's own clock says not to write
		return
	}
	fmt.Printf("ready %d\n", l.Fence)
	time.Sleep(guardPause)
	row := &guardWrite{Fence: l.Fence, Worker: cfg.Worker}
	var err error
	if cfg.Guard {
		err = db.Transaction(func(tx *gorm.DB) error {
			if err := m.Guard(ctx, tx, l); err != nil {
				return err
			}
			fmt.Printf("guarded %d\n", l.Fence) // the parent may stop it here too
			time.Sleep(guardPause)
			return tx.Table(cfg.Ledger).Create(row).Error
		})
	} else {
		err = db.Table(cfg.Ledger).Create(row).Error
	}
	switch {
	case err == nil:
		st.Writes++
	case errors.Is(err, lockmgr.ErrNotHeld):
		st.NotHeld++
	case cfg.Guard && conflict(err):
		st.Conflicts++
	default:
		st.Unexpected["write: "+short(err.Error())]++
	}
	if err := m.Release(ctx, l); err != nil && !errors.Is(err, lockmgr.ErrNotHeld) {
		st.Unexpected["release: "+short(err.Error())]++
	}
	fmt.Printf("done %d\n", l.Fence)
}

// conflict reports a transaction the database aborted for a write
// conflict: deadlock/certification (1213), TiDB's 9007 and its
// pessimistic lock that kept meeting newer writes of the row (1105),
// SQLSTATE 40001.
func conflict(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Error 1213") || strings.Contains(msg, "Error 9007") || strings.Contains(msg, "40001") ||
		strings.Contains(msg, "pessimistic lock retry limit reached")
}

// staleWrites counts the ledger's writes committed by a holder after a
// takeover of its lock: a write with fence f whose id is greater than the
// first id of a write with a fence above f. rows are in id order.
func staleWrites(rows []guardWrite) (stale int, first string) {
	var top int64
	for _, r := range rows {
		if r.Fence < top {
			stale++
			if first == "" {
				first = fmt.Sprintf("id %d: worker %d wrote fence %d after fence %d had written", r.ID, r.Worker, r.Fence, top)
			}
		}
		top = max(top, r.Fence)
	}
	return stale, first
}
