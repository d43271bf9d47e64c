package gocronlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/gocronlock"
)

// The torture's children are this test binary run again with envChild set
// (TestTortureChild); the rest of their settings come in these variables.
const (
	envChild   = "GOCRONLOCK_TORTURE_CHILD"
	envKind    = "GOCRONLOCK_KIND"
	envDSN     = "GOCRONLOCK_DSN"
	envTable   = "GOCRONLOCK_TABLE"
	envLedger  = "GOCRONLOCK_LEDGER"
	envSkew    = "GOCRONLOCK_SKEW_MS"
	envLocker  = "GOCRONLOCK_LOCKER"
	envReplica = "GOCRONLOCK_REPLICA"
)

// jobWork is how long the torture's job runs: long enough for a kill to
// land mid-run now and then.
const jobWork = 150 * time.Millisecond

// skewed is a clock that reads behind (a positive lag) the real one, as a
// replica's whose clock or scheduler runs late; its timers are the real
// ones, as durations do not depend on the reading.
type skewed struct {
	clockwork.Clock
	lag time.Duration
}

func (c skewed) Now() time.Time                  { return c.Clock.Now().Add(-c.lag) }
func (c skewed) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c skewed) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// realClock is the machine's clock.
var realClock = clockwork.NewRealClock()

// naiveLocker is the control: it releases the lock as soon as the job
// returns, so a replica whose scheduler fires the same tick later takes it
// again.
type naiveLocker struct{ m *lockmgr.Manager }

func (n naiveLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	l, err := n.m.GetLock(ctx, gocronlock.DefaultPrefix+key, lockmgr.Expires(750*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return naiveLock{n.m, l}, nil
}

type naiveLock struct {
	m *lockmgr.Manager
	l *lockmgr.Lock
}

func (n naiveLock) Unlock(ctx context.Context) error { return n.m.Release(ctx, n.l) }

// countingLocker reports every lock error that is not a plain "held" on
// stdout, for the parent to count (duplicate-key errors among them).
// It also records when gocron last asked for the lock (lockCalled, unix
// ms by the real clock), for the ledger.
type countingLocker struct{ gocron.Locker }

var lockCalled atomic.Int64

func (c countingLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lockCalled.Store(time.Now().UnixMilli())
	k, err := c.Locker.Lock(ctx, key)
	if err != nil && !errors.Is(err, lockmgr.ErrLocked) && ctx.Err() == nil { // not a scheduler shutting down
		fmt.Printf("LOCKERR %s\n", oneLine(err.Error()))
	}
	return k, err
}

// TestTortureChild is one replica of the scheduling torture: a gocron
// scheduler, its clock lagging as told, running the job "tick" every
// second under the locker told, writing each run to the ledger, until
// killed or told to stop (SIGTERM).
func TestTortureChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("run by TestSchedulingTorture")
	}
	b := backend{kind: os.Getenv(envKind), dsn: os.Getenv(envDSN)}
	db := b.open(t)
	replica, _ := strconv.Atoi(os.Getenv(envReplica))
	lagMS, _ := strconv.Atoi(os.Getenv(envSkew))
	lag := time.Duration(lagMS) * time.Millisecond
	m, err := lockmgr.New(db, lockmgr.WithTable(os.Getenv(envTable)), lockmgr.WithOwner(fmt.Sprintf("replica-%d", replica)))
	require.NoError(t, err)
	// The Manager's first call checks its table, which can take a few
	// hundred milliseconds on a busy machine: made now, not on a tick.
	_, err = m.IsLocked(t.Context(), "warm-up")
	require.NoError(t, err)
	locker := childLocker(t, m, db)
	if c, ok := locker.(interface{ Close(context.Context) error }); ok {
		defer func() { _ = c.Close(t.Context()) }() // after Shutdown: the last tick's row is deleted once its hold passes
	}
	ledger, pid := os.Getenv(envLedger), os.Getpid()
	job := func() {
		now, called := time.Now(), lockCalled.Load()
		tick := (called - lag.Milliseconds() + 500) / 1000 // the whole second its scheduler fired at
		if err := db.Exec("INSERT INTO "+ledger+" (tick, pid, replica, called_ms, started_ms, done) VALUES (?, ?, ?, ?, ?, 0)",
			tick, pid, replica, called, now.UnixMilli()).Error; err != nil {
			fmt.Printf("LEDGERERR %s\n", oneLine(err.Error()))
			return
		}
		time.Sleep(jobWork)
		_ = db.Exec("UPDATE "+ledger+" SET done = 1 WHERE tick = ? AND pid = ?", tick, pid).Error
	}
	s, err := gocron.NewScheduler(gocron.WithClock(skewed{realClock, lag}),
		gocron.WithDistributedLocker(countingLocker{locker}), gocron.WithLocation(time.UTC))
	require.NoError(t, err)
	_, err = s.NewJob(gocron.CronJob("* * * * * *", true), gocron.NewTask(job), gocron.WithName("tick"))
	require.NoError(t, err)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	s.Start()
	fmt.Println("READY")
	<-stop
	require.NoError(t, s.Shutdown())
}

func oneLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
