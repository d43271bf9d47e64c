package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// semParams size the semaphore torture: Procs worker processes contend
// for a semaphore of Slots; each worker believes it has Believed slots
// (Slots, or Slots+1 for the control); Chaos kills (-9) and pauses
// (SIGSTOP for less than the expiry, then SIGCONT) workers at random.
type semParams struct {
	Procs, Slots, Believed int
	Duration, Expires      time.Duration
	Chaos                  bool
}

func semTortureParams() semParams {
	p := semParams{Procs: 12, Slots: 3, Believed: 3, Duration: 10 * time.Second, Expires: 3 * time.Second, Chaos: true}
	if tortureMode() == "long" {
		p.Duration = 3 * time.Minute
	}
	return p
}

// TestSemaphoreTorture: 12 processes contend for a semaphore of 3 while
// the parent kills and pauses them. The ledger (semEvent) must show never
// more than 3 holds at once and never two on one slot, every process
// holding (no starvation), no slot lost to a pause shorter than the
// expiry, and every slot a killed holder held taken again within the
// expiry (plus a waiter's backoff). The control, the same workers told
// the semaphore has 4 slots, must show 4 at once: the ledger can fail.
func TestSemaphoreTorture(t *testing.T) {
	requireTorture(t)
	forEachDB(t, func(t *testing.T, tg target) { semTortureAndControl(t, tg, nil) })
}

// TestSemaphoreTortureTiDB is the same on the TiDB LOCKMGR_TEST_TIDB_DSN names.
func TestSemaphoreTortureTiDB(t *testing.T) {
	requireTorture(t)
	semTortureAndControl(t, tidbTarget(t), nil)
}

// TestSemaphoreTortureGalera is the same across a Galera cluster, each
// worker's lock calls on a node of its own (worker i on node i % nodes);
// the ledger stays on node 1, one server's order.
func TestSemaphoreTortureGalera(t *testing.T) {
	requireTorture(t)
	nodes := galeraNodes(t)
	semTortureAndControl(t, target{Name: "galera", Driver: "mysql", DSN: nodes[0]}, nodes)
}

func semTortureAndControl(t *testing.T, tg target, nodes []string) {
	t.Run("torture", func(t *testing.T) {
		p := semTortureParams()
		v := runSemTorture(t, tg, nodes, p)
		v.report(t, tg, p)
		assert.LessOrEqual(t, v.Peak, p.Slots, "more holders than slots: %v", v.Examples)
		assert.Equal(t, p.Slots, v.Peak, "the slots were never all in use: no contention")
		assert.Zero(t, v.SlotOverlaps, "two holders of one slot: %v", v.Examples)
		assert.Zero(t, v.Stats.Lost, "slots lost to pauses shorter than the expiry")
		assert.Empty(t, v.Stats.Unexpected, "errors other than ErrLocked")
		for proc := range p.Procs {
			assert.Positive(t, v.PerProc[proc], "process %d never held a slot (starved)", proc)
		}
		assert.Positive(t, v.Kills, "the chaos killed no worker")
		if len(v.Reuse) == 0 {
			t.Logf("no holder was killed early enough to see its slot taken again")
		}
		for _, d := range v.Reuse {
			assert.LessOrEqual(t, d, p.Expires+3*time.Second, "a killed holder's slot was free again only after %v", d)
		}
	})
	t.Run("control", func(t *testing.T) {
		p := semTortureParams()
		p.Believed, p.Duration, p.Chaos = p.Slots+1, 4*time.Second, false
		v := runSemTorture(t, tg, nodes, p)
		v.report(t, tg, p)
		assert.Greater(t, v.Peak, p.Slots, "workers that believe in %d slots were never seen %d at once: the ledger cannot fail",
			p.Believed, p.Believed)
	})
}

// semVerdict is what the ledger and the workers' stats say of one run.
type semVerdict struct {
	Holds, Peak, SlotOverlaps, Kills, Pauses int
	PerProc                                  map[int]int
	Reuse                                    []time.Duration // after each kill of a holder, until its slot was taken again
	Examples                                 []string
	Stats                                    semStats
}

func (v *semVerdict) report(t *testing.T, tg target, p semParams) {
	reuse := make([]string, len(v.Reuse))
	for i, d := range v.Reuse {
		reuse[i] = d.Round(time.Millisecond).String()
	}
	report(t, "semaphore", map[string]any{
		"db": tg.Name, "procs": p.Procs, "slots": p.Slots, "believed": p.Believed, "seconds": p.Duration.Seconds(),
		"holds": v.Holds, "peak": v.Peak, "slot_overlaps": v.SlotOverlaps, "per_proc": v.PerProc,
		"kills": v.Kills, "pauses": v.Pauses, "reuse_after_kill": reuse, "lost": v.Stats.Lost,
		"wait_timeouts": v.Stats.Timeouts, "unexpected": v.Stats.Unexpected,
	})
}

// semHarness runs the workers of one torture and the chaos among them.
type semHarness struct {
	t        *testing.T
	ledger   *gorm.DB
	base     semConfig
	nodes    []string
	ctx      context.Context
	children map[int]*child
	v        semVerdict
}

func runSemTorture(t *testing.T, tg target, nodes []string, p semParams) *semVerdict {
	db := mustOpen(t, tg)
	lockT, ledgerT := tableName("lock"), tableName("semlog")
	newManager(t, db, lockT)
	require.NoError(t, db.Table(ledgerT).AutoMigrate(&semEvent{}))
	dropTables(t, db, ledgerT)
	ctx, cancel := context.WithTimeout(context.Background(), p.Duration+3*time.Minute)
	defer cancel()
	h := &semHarness{t: t, ledger: db, nodes: nodes, ctx: ctx, children: map[int]*child{},
		base: semConfig{childTarget: childTarget{Driver: tg.Driver, DSN: tg.DSN, LockTable: lockT}, Ledger: ledgerT,
			Name: "exports", Slots: p.Believed, Expires: p.Expires, Deadline: time.Now().Add(p.Duration).UnixMicro()},
		v: semVerdict{PerProc: map[int]int{}, Stats: semStats{Unexpected: map[string]int{}}}}
	for proc := range p.Procs {
		h.start(proc)
	}
	if p.Chaos {
		h.chaos()
	} else {
		time.Sleep(p.Duration)
	}
	for proc, c := range h.children {
		h.collect(proc, c)
	}
	h.check()
	return &h.v
}

// start runs worker proc (again, after a kill).
func (h *semHarness) start(proc int) {
	cfg := h.base
	cfg.Proc, cfg.Seed = proc, rand.Uint64()
	if len(h.nodes) > 0 {
		cfg.NodeDSN = h.nodes[proc%len(h.nodes)]
	}
	h.children[proc] = startChild(h.ctx, h.t, "semaphore", cfg)
}

// chaos kills or pauses a random worker every 300-700 ms until the
// deadline; a killed worker is started again while time remains.
func (h *semHarness) chaos() {
	deadline := time.UnixMicro(h.base.Deadline)
	for time.Until(deadline) > time.Second {
		time.Sleep(time.Duration(300+rand.IntN(400)) * time.Millisecond)
		proc := rand.IntN(len(h.children))
		c := h.children[proc]
		if rand.IntN(10) < 4 {
			proc = h.holder(proc)
			c = h.children[proc]
			h.kill(proc, c)
			h.start(proc)
			continue
		}
		h.v.Pauses++
		_ = c.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond) // well within the 3 s expiry
		_ = c.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// holder is a worker the ledger shows inside a hold, of a few tried at
// random, else proc: a kill of a holder leaves a slot to be reused.
func (h *semHarness) holder(proc int) int {
	for range 6 {
		p := rand.IntN(len(h.children))
		var last semEvent
		err := h.ledger.Table(h.base.Ledger).Where("pid = ?", h.children[p].cmd.Process.Pid).Order("id DESC").Limit(1).Find(&last).Error
		if err == nil && last.Kind == "begin" {
			return p
		}
	}
	return proc
}

// kill kills c with SIGKILL and, if the ledger shows it inside a hold,
// ends that hold with a "killed" row: a dead process does no work.
func (h *semHarness) kill(proc int, c *child) {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	h.v.Kills++
	var last semEvent
	err := h.ledger.Table(h.base.Ledger).Where("pid = ?", c.cmd.Process.Pid).Order("id DESC").Limit(1).Find(&last).Error
	require.NoError(h.t, err)
	if last.Kind != "begin" {
		return
	}
	ev := semEvent{Proc: proc, Pid: c.cmd.Process.Pid, Kind: "killed", Slot: last.Slot, At: time.Now().UnixMicro()}
	require.NoError(h.t, h.ledger.Table(h.base.Ledger).Create(&ev).Error)
}

// collect waits for a worker that ran to the deadline and adds its stats.
func (h *semHarness) collect(proc int, c *child) {
	out, _ := io.ReadAll(c.stdout)
	if err := c.cmd.Wait(); err != nil {
		h.t.Fatalf("worker %d: %v\n%s", proc, err, c.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var s semStats
	require.NoError(h.t, json.Unmarshal([]byte(lines[len(lines)-1]), &s), "worker %d's stats: %q", proc, out)
	h.v.Stats.Timeouts += s.Timeouts
	h.v.Stats.Lost += s.Lost
	for k, n := range s.Unexpected {
		h.v.Stats.Unexpected[k] += n
	}
}

// check sweeps the ledger in id order: who is inside, on which slot.
func (h *semHarness) check() {
	var evs []semEvent
	require.NoError(h.t, h.ledger.Table(h.base.Ledger).Order("id").Find(&evs).Error)
	inside := map[int]semEvent{} // by pid
	for _, ev := range evs {
		if ev.Kind != "begin" {
			if ev.Kind == "killed" {
				h.reuseAfter(ev, evs)
			}
			delete(inside, ev.Pid)
			continue
		}
		h.v.Holds++
		h.v.PerProc[ev.Proc]++
		for _, o := range inside {
			if o.Slot == ev.Slot {
				h.v.SlotOverlaps++
				h.example("proc %d took %s (fence %d) while proc %d held it (fence %d)", ev.Proc, ev.Slot, ev.Fence, o.Proc, o.Fence)
			}
		}
		inside[ev.Pid] = ev
		if len(inside) > h.v.Peak {
			h.v.Peak = len(inside)
		}
		if len(inside) > semTortureParams().Slots {
			h.example("%d holders at once at ledger row %d", len(inside), ev.ID)
		}
	}
}

// reuseAfter records how long after a kill the killed holder's slot was
// taken again. A slot never taken again is recorded as the time left in
// the run, when that exceeds the expiry by the check's margin: a failure.
func (h *semHarness) reuseAfter(killed semEvent, evs []semEvent) {
	for _, ev := range evs {
		if ev.ID > killed.ID && ev.Kind == "begin" && ev.Slot == killed.Slot {
			h.v.Reuse = append(h.v.Reuse, time.Duration(ev.At-killed.At)*time.Microsecond)
			return
		}
	}
	if left := time.Duration(h.base.Deadline-killed.At) * time.Microsecond; left > h.base.Expires+3*time.Second {
		h.v.Reuse = append(h.v.Reuse, left)
	}
}

func (h *semHarness) example(format string, args ...any) {
	if len(h.v.Examples) < 5 {
		h.v.Examples = append(h.v.Examples, fmt.Sprintf(format, args...))
	}
}
