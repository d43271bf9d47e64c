package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	electionMembers = 5
	electionTTL     = time.Second
)

// electionDuration is how long the chaos scenario runs per database:
// 15 s with LOCKMGR_TORTURE=short, 5 min with long;
// LOCKMGR_TORTURE_DURATION overrides it.
func electionDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LOCKMGR_TORTURE_DURATION")); err == nil && d > 0 {
		return d
	}
	if tortureMode() == "long" {
		return 5 * time.Minute
	}
	return 15 * time.Second
}

// TestElectionTorture runs 5 member processes of one Election (TTL 1 s)
// on every database. Each leader writes a ledger row every 20 ms with
// its term's fence, checking its lead context before each; the parent
// kills (-9), pauses (SIGSTOP for the TTL + 0.5 s, then SIGCONT) or
// resigns (SIGUSR1 → Resign) the leader at random, keeping 5 members.
// The ledger judges it (see judgeElection): no write of a term after the
// next term's first write, fences growing term by term, a new leader's
// first write within TTL + 1 s of a kill or pause and 1 s of a resign,
// and every member's Observe seeing every term, in order. "shutdown"
// SIGTERMs the leader: Run waits for lead's last writes before it
// releases. "control" runs leaders that ignore their context, which the
// same ledger must catch writing after the next term began.
func TestElectionTorture(t *testing.T) {
	requireTorture(t)
	forEachElectionTarget(t, func(t *testing.T, et electionTarget) {
		t.Run("chaos", func(t *testing.T) { testElectionChaos(t, et) })
		t.Run("shutdown", func(t *testing.T) { testElectionShutdown(t, et) })
		t.Run("control", func(t *testing.T) { testElectionControl(t, et) })
	})
}

// disruption is one thing the parent did to a leader.
type disruption struct {
	kind  string // kill, pause, resign, sigterm
	fence int64  // the term it ended
	at    int64  // monoNow when the signal went
}

func testElectionChaos(t *testing.T, et electionTarget) {
	h := newElectionHarness(t, et, electionTTL)
	for range electionMembers {
		h.spawn()
	}
	var ds []disruption
	missed := 0
	fence := int64(0)
	for end := time.Now().Add(electionDuration()); time.Now().Before(end) || len(ds) < 3; {
		ev := h.awaitLeader(fence)
		fence = ev.fence
		if m := h.awaitObserved(fence); len(m) > 0 {
			missed += len(m)
			t.Errorf("term %d was not observed by %v", fence, m)
		}
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		d := h.disrupt(ev, []string{"kill", "pause", "resign"}[rand.IntN(3)])
		ds = append(ds, d)
	}
	h.awaitLeader(fence) // the last disruption's successor
	stopped := monoNow()
	h.stopAll()
	v := judgeElection(h.writes(), h.members(), ds, stopped, h.ttl)
	v.missedOnline = missed
	v.report(t, et.Name, "election-chaos")
	if v.extraTerms > 0 {
		t.Logf("disruptions: %+v", ds)
	}
	assert.Empty(t, v.stale, "writes of a term after the next term's first write (checked after a pause or never paused)")
	assert.Zero(t, v.fenceBackwards, "terms whose fence did not grow")
	assert.Empty(t, v.observeProblems, "members whose Observe missed a term or saw terms out of order")
	assertTakeovers(t, v, h.ttl, et.Driver == "sqlite")
	assert.GreaterOrEqual(t, len(v.terms), len(ds)+1, "a term per disruption, and the first")
}

func testElectionShutdown(t *testing.T, et electionTarget) {
	h := newElectionHarness(t, et, 3*time.Second)
	for range electionMembers {
		h.spawn()
	}
	var ds []disruption
	fence := int64(0)
	rounds := 2
	if tortureMode() == "long" {
		rounds = 10
	}
	for range rounds {
		ev := h.awaitLeader(fence)
		fence = ev.fence
		h.awaitObserved(fence)
		time.Sleep(300 * time.Millisecond)
		ds = append(ds, h.terminate(ev))
	}
	h.awaitLeader(fence)
	stopped := monoNow()
	h.stopAll()
	ws := h.writes()
	v := judgeElection(ws, h.members(), ds, stopped, h.ttl)
	v.report(t, et.Name, "election-shutdown")
	assert.Empty(t, v.stale, "the next leader wrote before the old one's last (drain) write")
	for _, d := range ds {
		last, next := lastDrainAndNext(ws, d.fence)
		require.NotNil(t, last, "the leader told to stop wrote no drain rows: Run did not wait for lead")
		require.NotNil(t, next, "no term after %d", d.fence)
		gap := time.Duration(next.Check - last.Check)
		t.Logf("term %d: last drain write #%d, next term's first #%d, %v later", d.fence, last.ID, next.ID, gap)
		assert.Greater(t, next.ID, last.ID)
		assert.Less(t, gap, h.ttl/2, "the next leader came %v after the old one's last write: released, not left to expire", gap)
	}
}

// terminate SIGTERMs the leader of ev, waits for it to exit (after its
// drain) and starts a member in its place.
func (h *electionHarness) terminate(ev leadEvent) disruption {
	d := disruption{kind: "sigterm", fence: ev.fence, at: h.signal(ev.p, syscall.SIGTERM)}
	select {
	case line := <-ev.p.exit:
		assert.Equal(h.t, "ok", line, "Run's result in the leader told to stop")
	case <-time.After(time.Minute):
		h.t.Fatalf("%s did not exit after SIGTERM", ev.p.who)
	}
	ev.p.mu.Lock()
	ev.p.ended = monoNow()
	ev.p.mu.Unlock()
	_ = ev.p.cmd.Wait()
	h.spawn()
	return d
}

// disrupt kills, pauses or resigns the leader of ev.
func (h *electionHarness) disrupt(ev leadEvent, kind string) disruption {
	d := disruption{kind: kind, fence: ev.fence}
	switch kind {
	case "kill":
		d.at = h.kill(ev.p)
		h.spawn()
	case "pause":
		d.at = h.pause(ev.p, h.ttl+500*time.Millisecond)
	case "resign":
		d.at = h.signal(ev.p, syscall.SIGUSR1)
		select {
		case r := <-ev.p.resigned:
			assert.Equal(h.t, "ok", r, "Resign in %s", ev.p.who)
		case <-time.After(10 * time.Second):
			h.t.Errorf("%s: Resign did not return", ev.p.who)
		}
	}
	return d
}

// assertTakeovers checks that the next term's first write came within
// TTL + 1 s of a kill or pause, and 1 s of a resign (a second more each
// under the race detector, raceSlack). On SQLite a member
// paused inside a write transaction holds the database's write lock
// meanwhile, so a pause may delay everyone by its length.
func assertTakeovers(t *testing.T, v electionVerdict, ttl time.Duration, sqlite bool) {
	t.Helper()
	limit := map[string]time.Duration{"kill": ttl + time.Second + raceSlack, "pause": ttl + time.Second + raceSlack, "resign": time.Second + raceSlack}
	if sqlite {
		limit["pause"] += ttl + 500*time.Millisecond
	}
	for kind, lat := range v.takeover {
		for _, d := range lat {
			assert.LessOrEqual(t, d, limit[kind], "a new leader's first write %v after a %s (limit %v)", d, kind, limit[kind])
		}
	}
}

// lastDrainAndNext returns the last write of term fence and the first
// write of a later term.
func lastDrainAndNext(ws []electionWrite, fence int64) (last, next *electionWrite) {
	for i := range ws {
		switch w := &ws[i]; {
		case w.Fence == fence && w.Phase == "drain":
			last = w
		case w.Fence > fence && next == nil:
			next = w
		}
	}
	return last, next
}

func testElectionControl(t *testing.T, et electionTarget) {
	h := newElectionHarness(t, et, electionTTL)
	h.control = true
	for range 3 {
		h.spawn()
	}
	var ds []disruption
	fence := int64(0)
	for range 2 {
		ev := h.awaitLeader(fence)
		fence = ev.fence
		time.Sleep(300 * time.Millisecond)
		ds = append(ds, disruption{kind: "pause", fence: fence, at: h.pause(ev.p, h.ttl+500*time.Millisecond)})
	}
	h.awaitLeader(fence)
	time.Sleep(300 * time.Millisecond)
	stopped := monoNow()
	h.stopAll()
	v := judgeElection(h.writes(), h.members(), ds, stopped, h.ttl)
	v.report(t, et.Name, "election-control")
	assert.NotEmpty(t, v.stale, "leaders that ignore their context kept writing after the next term began, "+
		"and the ledger did not see it: the torture cannot fail")
	if len(v.stale) > 0 {
		t.Logf("control, as expected: %d stale writes, the first: %+v", len(v.stale), v.stale[0])
	}
}

// electionVerdict is what the ledger and the members' output say.
type electionVerdict struct {
	writes, members int
	terms           []int64                    // fences, in the order of their first writes
	stale           []electionWrite            // a term's writes after a later term's first, checked after a pause or never paused
	midWrite        []electionWrite            // the same, by a member paused between its check and its commit
	slowWrite       []electionWrite            // the same, by a write slower than TTL/5 from check to commit
	fenceBackwards  int                        // a term's first write with a fence below an earlier term's
	takeover        map[string][]time.Duration // disruption → the next term's first write
	observeProblems []string
	missedOnline    int
	extraTerms      int // terms begun before stopping that no disruption explains (a leadership lost otherwise); reported
	termLog         []string
	counts          map[string]int
}

func judgeElection(ws []electionWrite, procs []*electionProc, ds []disruption, stopped int64, ttl time.Duration) electionVerdict {
	v := electionVerdict{writes: len(ws), members: len(procs), takeover: map[string][]time.Duration{}, counts: map[string]int{}}
	byWho := map[string]*electionProc{}
	for _, p := range procs {
		byWho[p.who] = p
	}
	first, last := v.scan(ws, byWho)
	for _, d := range ds {
		v.counts[d.kind]++
		for _, f := range v.terms {
			if f > d.fence {
				v.takeover[d.kind] = append(v.takeover[d.kind], time.Duration(first[f].Check-d.at))
				break
			}
		}
	}
	before := 0 // terms begun before the members were stopped (stopping hands over once more)
	for _, f := range v.terms {
		if first[f].Check < stopped {
			before++
		}
	}
	v.extraTerms = max(0, before-len(ds)-1)
	for _, f := range v.terms {
		v.termLog = append(v.termLog, fmt.Sprintf("%d by %s: #%d..#%d", f, first[f].Who, first[f].ID, last[f].ID))
	}
	v.observeProblems = checkObserved(procs, v.terms, first, last, stopped, ttl)
	return v
}

// scan replays the ledger in commit order: the terms in the order of their
// first writes, and every write of a term after a later term's first.
func (v *electionVerdict) scan(ws []electionWrite, byWho map[string]*electionProc) (first, last map[int64]electionWrite) {
	first, last = map[int64]electionWrite{}, map[int64]electionWrite{}
	maxFence := int64(0)
	for _, w := range ws {
		if _, ok := first[w.Fence]; !ok {
			first[w.Fence] = w
			if w.Fence <= maxFence {
				v.fenceBackwards++
			}
			v.terms = append(v.terms, w.Fence)
		}
		last[w.Fence] = w
		if w.Fence < maxFence {
			switch p := byWho[w.Who]; {
			case pausedMidWrite(p, w.Check):
				v.midWrite = append(v.midWrite, w)
			case slowWrite(p, w.ID):
				v.slowWrite = append(v.slowWrite, w)
			default:
				v.stale = append(v.stale, w)
			}
		}
		maxFence = max(maxFence, w.Fence)
	}
	return first, last
}

// slowWrite reports whether p found its write id slower than a fifth of
// the TTL from check to commit: past the margin a passed check leaves.
func slowWrite(p *electionProc, id int64) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.slow[id]
	return ok
}

// pausedMidWrite reports whether p was stopped within a second after a
// check at check: the write it checked for was in flight across a pause,
// the limit a lead context cannot lift (docs/leadership.md: use Guard).
func pausedMidWrite(p *electionProc, check int64) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ps := range p.pauses {
		if d := ps[0] - check; d >= 0 && d < int64(time.Second) {
			return true
		}
	}
	return false
}

// checkObserved checks that each member saw terms in increasing order,
// and saw every term that began and ended while it ran unpaused (with a
// TTL of slack on either side), except terms begun once stopping began.
func checkObserved(procs []*electionProc, terms []int64, first, last map[int64]electionWrite, stopped int64, ttl time.Duration) (problems []string) {
	for _, p := range procs {
		p.mu.Lock()
		if !slices.IsSorted(p.observed) || len(slices.Compact(slices.Clone(p.observed))) != len(p.observed) {
			problems = append(problems, fmt.Sprintf("%s observed %v: not in order", p.who, p.observed))
		}
		for _, f := range terms {
			from, to := first[f].Check, last[f].Check
			if from >= stopped || from < p.started+int64(ttl) || p.ended != 0 && to > p.ended-int64(ttl) || overlapsPause(p.pauses, from, to+int64(ttl)) {
				continue
			}
			if !slices.Contains(p.observed, f) {
				problems = append(problems, fmt.Sprintf("%s did not observe term %d", p.who, f))
			}
		}
		p.mu.Unlock()
	}
	return problems
}

func overlapsPause(pauses [][2]int64, from, to int64) bool {
	for _, ps := range pauses {
		if ps[0] < to && ps[1] > from {
			return true
		}
	}
	return false
}

func (v electionVerdict) report(t *testing.T, db, kind string) {
	t.Helper()
	fields := map[string]any{
		"db": db, "member_processes": v.members, "writes": v.writes, "terms": len(v.terms), "disruptions": v.counts,
		"stale_writes": len(v.stale), "paused_mid_write": len(v.midWrite), "slow_write": len(v.slowWrite), "fence_backwards": v.fenceBackwards,
		"observe_problems": len(v.observeProblems), "observe_missed_online": v.missedOnline, "extra_terms": v.extraTerms,
	}
	for k, ds := range v.takeover {
		slices.Sort(ds)
		fields[k+"_takeover_ms_median"] = ds[len(ds)/2].Milliseconds()
		fields[k+"_takeover_ms_max"] = ds[len(ds)-1].Milliseconds()
	}
	for _, p := range v.observeProblems {
		t.Log(p)
	}
	if n := len(v.midWrite) + len(v.slowWrite); n > 0 {
		t.Logf("stale writes a lead context cannot cover: paused mid-write %v, slow %v", v.midWrite, v.slowWrite)
	}
	if v.extraTerms > 0 || len(v.stale)+len(v.midWrite)+len(v.slowWrite) > 0 {
		t.Logf("terms: %v", v.termLog)
	}
	report(t, kind, fields)
}
