package reliability

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// electionTarget is a database of the election torture and the DSNs its
// members take turns on for their lock calls (Galera: one node each).
type electionTarget struct {
	target
	nodes []string
}

// forEachElectionTarget runs fn on SQLite, PostgreSQL and MariaDB as
// configured, and on TiDB and Galera when LOCKMGR_TEST_TIDB_DSN and
// LOCKMGR_TEST_GALERA_DSNS name them.
func forEachElectionTarget(t *testing.T, fn func(t *testing.T, et electionTarget)) {
	ts := configuredTargets()
	if dsn := os.Getenv("LOCKMGR_TEST_TIDB_DSN"); dsn != "" {
		ts = append(ts, target{Name: "tidb", Driver: "mysql", DSN: dsn})
	}
	galera := strings.Fields(os.Getenv(envGaleraDSNs))
	if len(galera) > 0 {
		ts = append(ts, target{Name: "galera", Driver: "mysql", DSN: galera[0]})
	}
	for _, tg := range ts {
		t.Run(tg.Name, func(t *testing.T) {
			if tg.Driver == "sqlite" {
				tg.DSN = sqliteDSN(filepath.Join(t.TempDir(), "lockmgr.db"))
			}
			et := electionTarget{target: tg, nodes: []string{tg.DSN}}
			if tg.Name == "galera" {
				et.nodes = galera
			}
			fn(t, et)
		})
	}
}

// electionHarness runs the member processes of one scenario.
type electionHarness struct {
	t              *testing.T
	et             electionTarget
	db             *gorm.DB // the ledger's server
	lockT, ledgerT string
	ttl, drain     time.Duration
	control        bool
	ctx            context.Context
	leads          chan leadEvent
	mu             sync.Mutex
	procs          []*electionProc
}

type leadEvent struct {
	p     *electionProc
	fence int64
}

// electionProc is one member process as the parent sees it; times are
// the host's CLOCK_MONOTONIC (monoNow).
type electionProc struct {
	*child
	who      string
	started  int64
	exit     chan string
	resigned chan string

	mu       sync.Mutex
	observed []int64                 // the fences of the terms its Observe printed, zero Terms left out
	slow     map[int64]time.Duration // ledger ids of its writes slower than TTL/5, check to commit
	pauses   [][2]int64              // SIGSTOP, SIGCONT
	ended    int64                   // killed or stopped; 0 while it runs
	paused   bool
}

func newElectionHarness(t *testing.T, et electionTarget, ttl time.Duration) *electionHarness {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	h := &electionHarness{t: t, et: et, db: mustOpen(t, et.target), lockT: tableName("lock"), ledgerT: tableName("elect"),
		ttl: ttl, drain: time.Second, ctx: ctx, leads: make(chan leadEvent, 1000)}
	newManager(t, h.db, h.lockT)
	require.NoError(t, h.db.Table(h.ledgerT).AutoMigrate(&electionWrite{}))
	dropTables(t, h.db, h.ledgerT)
	return h
}

// spawn starts a member and waits until it campaigns.
func (h *electionHarness) spawn() *electionProc {
	h.mu.Lock()
	n := len(h.procs)
	h.mu.Unlock()
	who := fmt.Sprintf("m%d", n)
	c := startChild(h.ctx, h.t, "election", electionWorkerConfig{
		Driver: h.et.Driver, LockDSN: h.et.nodes[n%len(h.et.nodes)], LedgerDSN: h.et.DSN,
		LockTable: h.lockT, Ledger: h.ledgerT, Name: "leader", Who: who,
		TTL: h.ttl, Tick: 20 * time.Millisecond, Drain: h.drain, Control: h.control,
	})
	p := &electionProc{child: c, who: who, started: monoNow(), exit: make(chan string, 1), resigned: make(chan string, 16),
		slow: map[int64]time.Duration{}}
	ready := make(chan struct{})
	go h.read(p, ready)
	select {
	case <-ready:
	case <-time.After(time.Minute):
		h.t.Fatalf("%s never started:\n%s", who, c.stderr.String())
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p
}

// read parses p's stdout until it ends.
func (h *electionHarness) read(p *electionProc, ready chan struct{}) {
	for sc := bufio.NewScanner(p.stdout); sc.Scan(); {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			close(ready)
		case "lead":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			h.leads <- leadEvent{p, n}
		case "observed":
			if n, _ := strconv.ParseInt(f[1], 10, 64); n != 0 {
				p.mu.Lock()
				p.observed = append(p.observed, n)
				p.mu.Unlock()
			}
		case "slow":
			id, _ := strconv.ParseInt(f[1], 10, 64)
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			p.mu.Lock()
			p.slow[id] = time.Duration(ns)
			p.mu.Unlock()
		case "resigned":
			p.resigned <- strings.Join(f[1:], " ")
		case "exit":
			p.exit <- strings.Join(f[1:], " ")
		}
	}
}

func (p *electionProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ended == 0 && !p.paused
}

// awaitLeader returns the first member to win a term after fence.
func (h *electionHarness) awaitLeader(after int64) leadEvent {
	h.t.Helper()
	timeout := time.After(3*h.ttl + 10*time.Second)
	for {
		select {
		case ev := <-h.leads:
			if ev.fence > after && ev.p.running() {
				return ev
			}
		case <-timeout:
			h.t.Fatalf("no new leader after term %d within %v", after, 3*h.ttl+10*time.Second)
		}
	}
}

// awaitObserved waits until every running member observed term fence,
// and reports those that did not within a TTL and 5 s.
func (h *electionHarness) awaitObserved(fence int64) (missed []string) {
	deadline := time.Now().Add(h.ttl + 5*time.Second)
	for {
		missed = missed[:0]
		for _, p := range h.members() {
			p.mu.Lock()
			if p.ended == 0 && !p.paused && !slices.Contains(p.observed, fence) {
				missed = append(missed, p.who)
			}
			p.mu.Unlock()
		}
		if len(missed) == 0 || time.Now().After(deadline) {
			return missed
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *electionHarness) members() []*electionProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.procs)
}

func (h *electionHarness) signal(p *electionProc, sig syscall.Signal) int64 {
	h.t.Helper()
	require.NoError(h.t, p.cmd.Process.Signal(sig))
	return monoNow()
}

func (h *electionHarness) kill(p *electionProc) int64 {
	at := h.signal(p, syscall.SIGKILL)
	p.mu.Lock()
	p.ended = at
	p.mu.Unlock()
	_ = p.cmd.Wait()
	return at
}

// pause stops p for d, then resumes it; it returns when it stopped.
func (h *electionHarness) pause(p *electionProc, d time.Duration) int64 {
	at := h.signal(p, syscall.SIGSTOP)
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	time.Sleep(d)
	cont := h.signal(p, syscall.SIGCONT)
	p.mu.Lock()
	p.paused = false
	p.pauses = append(p.pauses, [2]int64{at, cont})
	p.mu.Unlock()
	return at
}

// stopAll ends every member still running: SIGTERM and its "exit" line,
// or, for a control member (whose lead never returns), SIGKILL.
func (h *electionHarness) stopAll() {
	h.t.Helper()
	for _, p := range h.members() {
		p.mu.Lock()
		live := p.ended == 0
		p.mu.Unlock()
		if !live {
			continue
		}
		if h.control {
			h.kill(p)
			continue
		}
		at := h.signal(p, syscall.SIGTERM)
		select {
		case line := <-p.exit:
			if line != "ok" {
				h.t.Errorf("%s: exit %s\n%s", p.who, line, p.stderr.String())
			}
		case <-time.After(h.drain + 30*time.Second):
			h.t.Errorf("%s did not exit after SIGTERM:\n%s", p.who, p.stderr.String())
		}
		_ = p.cmd.Wait()
		p.mu.Lock()
		p.ended = at
		p.mu.Unlock()
	}
}

// writes returns the ledger in commit order (its server's auto-increment).
func (h *electionHarness) writes() []electionWrite {
	h.t.Helper()
	var ws []electionWrite
	require.NoError(h.t, h.db.Table(h.ledgerT).Order("id").Find(&ws).Error)
	return ws
}
