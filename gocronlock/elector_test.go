package gocronlock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/gocronlock"
)

// TestElectorOnlyTheLeaderRuns: of two schedulers on one election, only
// the leader's runs the job; after it resigns, the other's does.
func TestElectorOnlyTheLeaderRuns(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		var mu sync.Mutex
		ran := map[string]int{}
		electors := map[string]*gocronlock.Elector{}
		elections := map[string]*lockmgr.Election{}
		for _, id := range []string{"a", "b"} {
			el, err := lockmgr.NewElection(e.manager(t, id), "cron-leader", lockmgr.Identity(id), lockmgr.TTL(3*time.Second))
			require.NoError(t, err)
			elector := gocronlock.NewElector(el)
			elections[id], electors[id] = el, elector
			wg.Add(1)
			go func() { defer wg.Done(); _ = elector.Run(ctx) }()
			s, err := gocron.NewScheduler(gocron.WithDistributedElector(elector))
			require.NoError(t, err)
			_, err = s.NewJob(gocron.DurationJob(50*time.Millisecond), gocron.NewTask(func() {
				mu.Lock()
				ran[id]++
				mu.Unlock()
			}))
			require.NoError(t, err)
			s.Start()
			defer func() { _ = s.Shutdown() }()
		}
		leader := func() string {
			for id, el := range electors {
				if el.IsLeader(ctx) == nil {
					return id
				}
			}
			return ""
		}
		require.Eventually(t, func() bool { return leader() != "" }, 10*time.Second, 10*time.Millisecond)
		first := leader()
		other := map[string]string{"a": "b", "b": "a"}[first]
		assert.ErrorIs(t, electors[other].IsLeader(ctx), gocronlock.ErrNotLeader)
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		assert.Positive(t, ran[first], "the leader runs the job")
		assert.Zero(t, ran[other], "the other member does not")
		mu.Unlock()

		require.NoError(t, elections[first].Resign(ctx))
		require.Eventually(t, func() bool { return electors[other].IsLeader(ctx) == nil }, 10*time.Second, 10*time.Millisecond,
			"the other member leads after the resignation")
		mu.Lock()
		before := ran[other]
		mu.Unlock()
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return ran[other] > before }, 5*time.Second, 10*time.Millisecond)
	})
}

func TestElectorWithoutElection(t *testing.T) {
	assert.ErrorIs(t, gocronlock.NewElector(nil).IsLeader(context.Background()), lockmgr.ErrInvalidOption)
}
