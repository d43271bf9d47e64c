package pgnotify_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
)

// An observer with a Listener sees a handover made through another
// database handle (as another process would) within milliseconds, though
// its polling alone (every third of a 30 s TTL) would take seconds.
func TestObserveHearsHandoverThroughListener(t *testing.T) {
	dsn, _, m, _, table := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watcher, err := lockmgr.NewElection(m, "leader", lockmgr.TTL(30*time.Second))
	require.NoError(t, err)
	seen := watcher.Observe(ctx)
	require.Equal(t, lockmgr.Term{}, <-seen)

	other, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, _ := other.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	l2, err := pgnotify.Listen(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l2.Close()) })
	m2, err := lockmgr.New(other, lockmgr.WithTable(table), lockmgr.WithNotifier(l2))
	require.NoError(t, err)

	members := map[string]*lockmgr.Election{}
	done := make(chan error, 2)
	for _, id := range []string{"a", "b"} {
		el, err := lockmgr.NewElection(m2, "leader", lockmgr.Identity(id), lockmgr.TTL(30*time.Second))
		require.NoError(t, err)
		members[id] = el
		go func() {
			done <- el.Run(ctx, func(ctx context.Context, _ lockmgr.Term) error { <-ctx.Done(); return ctx.Err() })
		}()
	}
	next := func() lockmgr.Term {
		for {
			select {
			case tm := <-seen:
				if tm != (lockmgr.Term{}) {
					return tm
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Observe saw no leader")
			}
		}
	}
	cur := next()
	for round := range 2 {
		time.Sleep(2500 * time.Millisecond) // the last leader stands aside for 2 s after resigning
		resigned := time.Now()
		require.NoError(t, members[cur.Identity].Resign(ctx))
		nt := next()
		took := time.Since(resigned)
		t.Logf("round %d: observed the handover %s -> %s in %v", round, cur.Identity, nt.Identity, took)
		assert.NotEqual(t, cur.Identity, nt.Identity)
		assert.Less(t, took, time.Second, "the release notice woke the observer")
		cur = nt
	}
	stopped := time.Now()
	cancel()
	<-done
	<-done
	t.Logf("members stopped in %v", time.Since(stopped))
}
