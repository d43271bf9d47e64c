package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

func TestElectionRefusesBadInput(t *testing.T) {
	e := newEnv(t, backends()[0])
	ctx := context.Background()
	tx := e.db.Begin()
	defer tx.Rollback()
	for _, c := range []struct {
		name string
		m    *lockmgr.Manager
		elec string
		opts []lockmgr.ElectionOption
		want error
		says string
	}{
		{"nil manager", nil, "x", nil, lockmgr.ErrInvalidOption, "nil Manager"},
		{"empty name", e.m, "", nil, lockmgr.ErrInvalidName, ""},
		{"short TTL", e.m, "x", []lockmgr.ElectionOption{lockmgr.TTL(time.Millisecond)}, lockmgr.ErrInvalidOption, "TTL(1ms)"},
		{"negative TTL", e.m, "x", []lockmgr.ElectionOption{lockmgr.TTL(-time.Second)}, lockmgr.ErrInvalidOption, "TTL(-1s)"},
		{"empty identity", e.m, "x", []lockmgr.ElectionOption{lockmgr.Identity("")}, lockmgr.ErrInvalidOption, "Identity is empty"},
		{"long identity", e.m, "x", []lockmgr.ElectionOption{lockmgr.Identity(strings.Repeat("a", 256))}, lockmgr.ErrInvalidOption, "Identity"},
		{"nil option", e.m, "x", []lockmgr.ElectionOption{nil}, lockmgr.ErrInvalidOption, "nil ElectionOption"},
		{"in a transaction", e.m.WithTx(tx), "x", nil, lockmgr.ErrInvalidOption, "transaction"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := lockmgr.NewElection(c.m, c.elec, c.opts...)
			require.ErrorIs(t, err, c.want)
			assert.Contains(t, err.Error(), c.says)
		})
	}
	el, err := lockmgr.NewElection(e.m, "x")
	require.NoError(t, err)
	assert.Contains(t, el.Identity(), ":", "the default identity is owner and pid")
	require.ErrorIs(t, el.Run(ctx, nil), lockmgr.ErrInvalidOption)
	var nilCtx context.Context
	require.ErrorIs(t, el.Run(nilCtx, untilDone), lockmgr.ErrInvalidOption)
	_, err = el.Leader(nilCtx)
	require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	require.ErrorIs(t, el.Resign(nilCtx), lockmgr.ErrInvalidOption)
	_, open := <-el.Observe(nilCtx)
	assert.False(t, open, "Observe without a context closes its channel")
	assert.False(t, e.isLocked("x"), "nothing was written")
}

// member is one Run of an election, recording its terms.
type member struct {
	el    *lockmgr.Election
	done  chan error
	terms chan lockmgr.Term
}

func startMember(t *testing.T, ctx context.Context, m *lockmgr.Manager, id string, lead func(ctx context.Context, t lockmgr.Term) error) *member {
	el, err := lockmgr.NewElection(m, "leader", lockmgr.Identity(id), lockmgr.TTL(time.Second))
	require.NoError(t, err)
	mb := &member{el: el, done: make(chan error, 1), terms: make(chan lockmgr.Term, 100)}
	go func() {
		mb.done <- el.Run(ctx, func(ctx context.Context, tm lockmgr.Term) error {
			mb.terms <- tm
			return lead(ctx, tm)
		})
	}()
	return mb
}

// untilDone is a lead that works until its context ends.
func untilDone(ctx context.Context, _ lockmgr.Term) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestElectionOneLeaderHandsOverOnResign(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		var leaders, most atomic.Int32
		lead := func(ctx context.Context, _ lockmgr.Term) error {
			n := leaders.Add(1)
			defer leaders.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-ctx.Done()
			return ctx.Err()
		}
		var members []*member
		for i := range 3 {
			members = append(members, startMember(t, ctx, e.m, fmt.Sprintf("m%d", i), lead))
		}
		var fences []int64
		for round := range 3 {
			fences = append(fences, resignRound(t, e, members, round < 2))
		}
		cancel()
		for _, mb := range members {
			require.ErrorIs(t, <-mb.done, context.Canceled)
		}
		assert.EqualValues(t, 1, most.Load(), "never two leaders at once")
		assert.IsIncreasing(t, fences, "fences grow term by term")
		_, err := members[0].el.Leader(e.ctx)
		assert.ErrorIs(t, err, lockmgr.ErrNoLeader, "Run released the lock when its context ended")
	})
}

// resignRound waits for one of members to lead, checks what Leader and
// Leading say, makes it resign and, when next, waits for another to lead.
// It returns the term's fence.
func resignRound(t *testing.T, e *env, members []*member, next bool) int64 {
	var tm lockmgr.Term
	var who *member
	select {
	case tm = <-members[0].terms:
		who = members[0]
	case tm = <-members[1].terms:
		who = members[1]
	case tm = <-members[2].terms:
		who = members[2]
	case <-time.After(10 * time.Second):
		t.Fatal("no leader")
	}
	got, err := who.el.Leader(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, tm.Identity, got.Identity)
	assert.Equal(t, tm.Fence, got.Fence)
	assert.Equal(t, who.el.Identity(), tm.Identity)
	lt, ok := who.el.Leading()
	assert.True(t, ok)
	assert.Equal(t, tm.Fence, lt.Fence)
	resigned := time.Now()
	require.NoError(t, who.el.Resign(e.ctx))
	_, ok = who.el.Leading()
	assert.False(t, ok, "a member that resigned does not lead")
	if next {
		eventually(t, 3*time.Second, func() bool {
			l, err := who.el.Leader(e.ctx)
			return err == nil && l.Fence > tm.Fence
		}, "another member leads soon after a resign")
		t.Logf("handover in %v", time.Since(resigned))
	}
	return tm.Fence
}

func TestElectionRunWaitsForLeadBeforeRelease(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		var returned atomic.Bool
		var el *lockmgr.Election // set before cancel, read after ctx.Done
		mb := startMember(t, ctx, e.m, "slow", func(ctx context.Context, _ lockmgr.Term) error {
			<-ctx.Done()
			time.Sleep(time.Second) // still writing its last batch
			assert.True(t, e.isLocked("leader"), "the lock is held while lead runs")
			_, leading := el.Leading()
			assert.True(t, leading, "Leading stays true while lead finishes after Run's context ended")
			returned.Store(true)
			return ctx.Err()
		})
		el = mb.el
		<-mb.terms
		cancel()
		require.ErrorIs(t, <-mb.done, context.Canceled)
		assert.True(t, returned.Load(), "Run returned only after lead")
		assert.False(t, e.isLocked("leader"), "then released")
	})
}

func TestElectionLeadErrorEndsRun(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		boom := errors.New("boom")
		mb := startMember(t, e.ctx, e.m, "a", func(context.Context, lockmgr.Term) error { return boom })
		require.ErrorIs(t, <-mb.done, boom)
		assert.False(t, e.isLocked("leader"), "released before Run returned")
	})
}

func TestElectionCampaignsAgainAfterLoss(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		causes := make(chan error, 10)
		mb := startMember(t, ctx, e.m, "a", func(ctx context.Context, _ lockmgr.Term) error {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		})
		first := <-mb.terms
		_, leading := mb.el.Leading()
		require.True(t, leading)
		require.NoError(t, e.m.Unlock(e.ctx, "leader")) // an operator clears it
		select {
		case err := <-causes:
			assert.ErrorIs(t, err, lockmgr.ErrLockLost)
		case <-time.After(10 * time.Second):
			t.Fatal("lead never learned it lost")
		}
		select {
		case second := <-mb.terms:
			assert.Greater(t, second.Fence, first.Fence)
		case <-time.After(10 * time.Second):
			t.Fatal("the member did not campaign again")
		}
		cancel()
		require.ErrorIs(t, <-mb.done, context.Canceled)
	})
}

func TestElectionObserveSeesEveryTerm(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		watcher, err := lockmgr.NewElection(e.manager(), "leader", lockmgr.TTL(time.Second))
		require.NoError(t, err)
		seen := watcher.Observe(ctx)
		require.Equal(t, lockmgr.Term{}, <-seen, "no leader yet")
		var members []*member
		for i := range 2 {
			members = append(members, startMember(t, ctx, e.m, fmt.Sprintf("m%d", i), untilDone))
		}
		next := func() lockmgr.Term {
			for {
				select {
				case tm := <-seen:
					if tm != (lockmgr.Term{}) {
						return tm
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Observe saw no change")
				}
			}
		}
		a := next()
		for _, mb := range members {
			if mb.el.Identity() == a.Identity {
				require.NoError(t, mb.el.Resign(e.ctx))
			}
		}
		b := next()
		assert.NotEqual(t, a.Identity, b.Identity)
		assert.Greater(t, b.Fence, a.Fence)
		cancel()
		for _, mb := range members {
			<-mb.done
		}
		for range seen { // closed once ctx ends
		}
	})
}

// A slow observer never holds the election up: its channel keeps only
// the latest term.
func TestElectionSlowObserverDoesNotBlock(t *testing.T) {
	e := newEnv(t, backends()[0])
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	el, err := lockmgr.NewElection(e.m, "leader", lockmgr.TTL(time.Second))
	require.NoError(t, err)
	seen := el.Observe(ctx) // never read until the end
	var fence int64
	for range 5 {
		terms := make(chan lockmgr.Term, 1)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- el.Run(rctx, func(ctx context.Context, tm lockmgr.Term) error {
				select { // lead returns at once: Run may win again before stop
				case terms <- tm:
				default:
				}
				return nil
			})
		}()
		fence = (<-terms).Fence
		stop()
		<-done
	}
	var last lockmgr.Term
	eventually(t, 3*time.Second, func() bool {
		select {
		case last = <-seen:
		default:
		}
		return last == (lockmgr.Term{})
	}, "the observer catches up with the latest state (no leader)")
	assert.Positive(t, fence)
}
