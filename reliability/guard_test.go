package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// guardExpires is the stale-writer torture's lock expiry: short, so that
// a stopped holder is past it soon.
const guardExpires = 500 * time.Millisecond

// guardParams: worker processes, and how long each mode runs per database
// (LOCKMGR_TORTURE_DURATION overrides it).
func guardParams() (procs int, d time.Duration) {
	if d, err := time.ParseDuration(os.Getenv("LOCKMGR_TORTURE_DURATION")); err == nil && d > 0 {
		return 4, d
	}
	switch tortureMode() {
	case "long":
		return 4, 15 * time.Minute
	case "short":
		return 4, 15 * time.Second
	}
	return 3, 4 * time.Second
}

// TestGuardStaleWriters is the stale-writer torture: worker processes take
// one name with a short expiry and write their fence to a ledger table
// under it. The parent SIGSTOPs a holder that has just checked its lock,
// keeps it stopped until another worker has taken the name over and
// written, then SIGCONTs it, and it writes. With Guard, it also stops
// holders inside their guarded transaction, after the guard, for twice
// the expiry: no one may take the lock over meanwhile (on Galera, which
// does not replicate row locks, one may, and certification must then
// abort the stopped transaction). The ledger, in id order, judges: with
// Guard no write commits after a takeover of its writer's lock; without
// (the control) such stale writes must show, or the test could not fail.
func TestGuardStaleWriters(t *testing.T) {
	requireTorture(t)
	forEachDB(t, func(t *testing.T, tg target) {
		// The README's DSN: GORM's transactions deferred, not immediate.
		tg.DSN = strings.Replace(tg.DSN, "&_txlock=immediate", "", 1)
		guardTorture(t, tg, nil)
	})
}

// TestGuardStaleWritersTiDB is the same torture on TiDB.
func TestGuardStaleWritersTiDB(t *testing.T) {
	requireTorture(t)
	guardTorture(t, tidbTarget(t), nil)
}

// TestGuardStaleWritersGalera is the same torture across a Galera
// cluster, each worker on a node of its own (writing its ledger rows
// there too); the parent reads the ledger on node 1.
func TestGuardStaleWritersGalera(t *testing.T) {
	requireTorture(t)
	nodes := galeraNodes(t)
	t.Logf("clock of the last node minus the first: %v", galeraClockOffset(t, nodes))
	guardTorture(t, target{Name: "galera", Driver: "mysql", DSN: nodes[0]}, nodes)
}

func guardTorture(t *testing.T, tg target, nodes []string) {
	for _, guarded := range []bool{true, false} {
		t.Run(map[bool]string{true: "guard", false: "control"}[guarded], func(t *testing.T) {
			r := newGuardRun(t, tg, nodes, guarded).play(t)
			report(t, "guard-stale-writers", map[string]any{
				"db": tg.Name, "guard": guarded, "stops": r.stops, "takeovers": r.takeovers, "writes": len(r.rows),
				"stale_writes": r.stale, "not_held": r.stats.NotHeld, "conflicts": r.stats.Conflicts,
				"holds": r.stats.Holds, "skipped": r.stats.Skipped, "unexpected": r.stats.Unexpected,
				"stopped_in_tx": r.inTx, "taken_over_in_tx": r.takenInTx,
			})
			assert.Empty(t, r.stats.Unexpected, "errors other than ErrLocked, ErrNotHeld and write conflicts")
			assert.Positive(t, r.takeovers, "no holder was stopped and taken over: the torture tested nothing")
			if guarded {
				assert.Zero(t, r.stale, "writes committed after a takeover of their lock, first: %s", r.first)
				if len(nodes) == 0 {
					assert.Zero(t, r.takenInTx, "a lock taken over while its guarded transaction was open")
				}
				assert.Positive(t, r.stats.NotHeld+r.stats.Conflicts, "no stale write was refused")
				return
			}
			assert.Positive(t, r.stale, "the control's stale writes went unseen: the ledger cannot catch one")
			t.Logf("control, as expected: %d stale writes, the first: %s", r.stale, r.first)
		})
	}
}

// guardRun is one mode's run on one database.
type guardRun struct {
	tg       target
	nodes    []string
	db       *gorm.DB
	cfg      guardConfig
	stopped  atomic.Bool // one holder stopped at a time: the others take over
	lastStop time.Time   // no stop after it: the others must still run to take over

	mu               sync.Mutex
	stops, takeovers int
	// inTx counts holders stopped inside their guarded transaction, and
	// takenInTx those whose lock was taken over meanwhile (possible only
	// on Galera, which does not replicate row locks: certification then
	// aborts the stopped transaction).
	inTx, takenInTx int
	stats           guardStats
	rows            []guardWrite
	stale           int
	first           string
}

func newGuardRun(t *testing.T, tg target, nodes []string, guarded bool) *guardRun {
	db := mustOpen(t, tg)
	lockT, ledgerT := tableName("lock"), tableName("gledger")
	newManager(t, db, lockT)
	require.NoError(t, db.Table(ledgerT).AutoMigrate(&guardWrite{}))
	dropTables(t, db, ledgerT)
	_, d := guardParams()
	return &guardRun{tg: tg, nodes: nodes, db: db, stats: guardStats{Unexpected: map[string]int64{}}, cfg: guardConfig{
		childTarget: childTarget{Driver: tg.Driver, DSN: tg.DSN, LockTable: lockT}, Ledger: ledgerT,
		Name: "stale-writer", Expires: guardExpires, Duration: d, Guard: guarded,
	}}
}

// play runs the workers to their end and reads the ledger.
func (g *guardRun) play(t *testing.T) *guardRun {
	procs, d := guardParams()
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	g.lastStop = time.Now().Add(d - 2*time.Second)
	var wg sync.WaitGroup
	for i := range procs {
		cfg := g.cfg
		cfg.Worker = i
		if len(g.nodes) > 0 {
			cfg.DSN = g.nodes[i%len(g.nodes)]
		}
		c := startChild(ctx, t, "guard", cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.watch(t, c)
		}()
	}
	wg.Wait()
	require.NoError(t, g.db.Table(g.cfg.Ledger).Order("id").Find(&g.rows).Error)
	g.stale, g.first = staleWrites(g.rows)
	return g
}

// watch reads a worker's lines until it exits: it may stop the worker at
// each "ready", and adds up its stats.
func (g *guardRun) watch(t *testing.T, c *child) {
	var stops sync.WaitGroup
	for sc := bufio.NewScanner(c.stdout); sc.Scan(); {
		line := sc.Text()
		what, f, _ := strings.Cut(line, " ")
		if (what == "ready" || what == "guarded") && rand.IntN(2) == 0 && time.Now().Before(g.lastStop) &&
			g.stopped.CompareAndSwap(false, true) {
			fence, _ := strconv.ParseInt(f, 10, 64)
			_ = c.cmd.Process.Signal(syscall.SIGSTOP)
			stops.Add(1)
			go func() {
				defer stops.Done()
				if what == "ready" {
					g.stopUntilTakenOver(t, c, fence)
				} else {
					g.stopInTx(t, c, fence)
				}
			}()
		}
		if raw, ok := strings.CutPrefix(line, "stats "); ok {
			var s guardStats
			if assert.NoError(t, json.Unmarshal([]byte(raw), &s)) {
				g.add(s)
			}
		}
	}
	stops.Wait()
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("%s worker: %v\n%s", g.tg.Name, err, c.stderr.String())
	}
}

// stopUntilTakenOver keeps a stopped worker stopped past its expiry and
// until the ledger shows a higher fence's write (10 s at most), then
// resumes it. A worker that had written before the stop landed is no
// takeover of a stale writer.
func (g *guardRun) stopUntilTakenOver(t *testing.T, c *child, fence int64) {
	defer g.stopped.Store(false)
	defer func() { _ = c.cmd.Process.Signal(syscall.SIGCONT) }()
	time.Sleep(guardExpires)
	wrote := g.count(t, "fence = ?", fence) > 0
	over := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !over; time.Sleep(20 * time.Millisecond) {
		over = g.count(t, "fence > ?", fence) > 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stops++
	if over && !wrote {
		g.takeovers++
	}
}

// stopInTx keeps a worker stopped inside its guarded transaction for
// twice the expiry, and records whether its lock was taken over
// meanwhile (its row is held: only on Galera), then resumes it.
func (g *guardRun) stopInTx(t *testing.T, c *child, fence int64) {
	defer g.stopped.Store(false)
	defer func() { _ = c.cmd.Process.Signal(syscall.SIGCONT) }()
	time.Sleep(2 * guardExpires)
	taken := g.count(t, "fence > ?", fence) > 0
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inTx++
	if taken {
		g.takenInTx++
	}
}

func (g *guardRun) count(t *testing.T, where string, fence int64) int64 {
	var n int64
	if err := g.db.Table(g.cfg.Ledger).Where(where, fence).Count(&n).Error; err != nil {
		t.Errorf("read the ledger: %v", err)
	}
	return n
}

func (g *guardRun) add(s guardStats) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stats.Holds += s.Holds
	g.stats.Writes += s.Writes
	g.stats.NotHeld += s.NotHeld
	g.stats.Skipped += s.Skipped
	g.stats.Conflicts += s.Conflicts
	for k, v := range s.Unexpected {
		g.stats.Unexpected[k] += v
	}
}

// String describes a run for failure messages.
func (g *guardRun) String() string {
	return fmt.Sprintf("%s guard=%v: %d stops, %d takeovers, %d stale", g.tg.Name, g.cfg.Guard, g.stops, g.takeovers, g.stale)
}
