package reliability

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// roundResult is what the parent finds after one failover.
type roundResult struct {
	before      int // own-name acquisitions acknowledged before the kill
	lost        int // of those, missing (or another fence) on the new primary
	overlaps    int // contended acquisitions taken while the previous one was live
	unexplained int // overlaps whose previous holder was acknowledged outside the loss window
	repeats     int // a contended name's fence handed out twice
	back        int // a contended name's fence lower than its previous one
	takenOver   int // lost locks (still believed held) that another caller then took
}

// takeLost tries to take a lost lock, whose holder still believes it holds
// it for minutes: 1 when another caller gets it, the loss made concrete.
func takeLost(m *lockmgr.Manager, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute)); err != nil {
		return 0
	}
	return 1
}

// judgeRound compares the workers' acknowledgements with the new primary.
func judgeRound(t *testing.T, env *failoverEnv, r *failoverRound) roundResult {
	t.Helper()
	var rows []struct {
		Name  string
		Fence int64
	}
	require.NoError(t, env.db.Table(env.table).Select("name, fence").Where("name LIKE ?", "u-%").Find(&rows).Error)
	have := map[string]int64{}
	for _, row := range rows {
		have[row.Name] = row.Fence
	}
	var res roundResult
	shared := map[string][]replicaAck{}
	for _, a := range r.acks {
		if strings.HasPrefix(a.Name, "s-") {
			shared[a.Name] = append(shared[a.Name], a)
			continue
		}
		if a.Recv.Before(r.killed) {
			res.before++
			if f, ok := have[a.Name]; !ok || f != a.Fence {
				res.lost++
				res.takenOver += takeLost(env.m, a.Name)
			}
		}
	}
	lossFrom := r.killed.Add(-time.Second) // async: what the standby may not have had
	if !r.cut.IsZero() {
		lossFrom = r.cut
	}
	for _, acks := range shared {
		judgeShared(&res, acks, env.mode == "async", lossFrom)
	}
	return res
}

// judgeShared checks one contended name's acquisitions in the order the
// parent heard of them: fences only grow, and an acquisition starts (by
// the database's clock, one machine's) after the previous one expired.
func judgeShared(res *roundResult, acks []replicaAck, async bool, lossFrom time.Time) {
	sort.Slice(acks, func(i, j int) bool { return acks[i].Recv.Before(acks[j].Recv) })
	for i := 1; i < len(acks); i++ {
		prev, next := acks[i-1], acks[i]
		switch {
		case next.Fence == prev.Fence:
			res.repeats++
		case next.Fence < prev.Fence:
			res.back++
		}
		if next.Created < prev.Until {
			res.overlaps++
			if !async || prev.Recv.Before(lossFrom) {
				res.unexplained++
			}
		}
	}
}

// scopeHold is a scope held across the failover, recorded in a ledger.
type scopeHold struct {
	s       *lockmgr.Scope
	led     *ledger
	h       *ledgerHold
	release func()
}

func holdScope(t *testing.T, env *failoverEnv, round string) *scopeHold {
	t.Helper()
	s, err := env.m.Acquire(context.Background(), "scope-"+round, lockmgr.Expires(6*time.Second))
	require.NoError(t, err)
	led := newLedger()
	h := led.begin(s.Main().Name, "scope", s.Main().Fence)
	return &scopeHold{s: s, led: led, h: h, release: led.watch(h, s.Context())}
}

// contendScope tries for 5 s after the promotion to take the scope's
// name from another pool; the ledger records any overlap. It returns
// whether the scope kept its lock or reported its loss, and overlaps.
func contendScope(t *testing.T, env *failoverEnv, sh *scopeHold) map[string]any {
	t.Helper()
	other := newManagerOn(t, env)
	deadline := time.Now().Add(5 * time.Second)
	taken := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, err := other.GetLock(ctx, sh.h.name, lockmgr.Expires(500*time.Millisecond))
		cancel()
		if err == nil {
			taken++
			h := sh.led.begin(sh.h.name, "contender", l.Fence)
			_ = other.Release(context.Background(), l)
			sh.led.end(h, false)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kept := sh.s.Context().Err() == nil
	if kept {
		held, err := env.m.IsLocked(context.Background(), sh.h.name)
		require.NoError(t, err)
		assert.True(t, held, "the scope says it holds its lock, the new primary has no live row")
	}
	sh.release()
	_ = sh.s.Close()
	_, lost, overlaps := sh.led.snapshot()
	if env.mode == "sync" {
		assert.Empty(t, overlaps, "a contender took the scope's lock while the scope held it")
	}
	return map[string]any{"kept": kept, "reported_lost": lost, "contender_took": taken, "overlaps": len(overlaps)}
}

func newManagerOn(t *testing.T, env *failoverEnv) *lockmgr.Manager {
	t.Helper()
	db := mustOpen(t, target{Driver: "postgres", DSN: env.dsn})
	m, err := lockmgr.New(db, lockmgr.WithTable(env.table))
	require.NoError(t, err)
	return m
}
