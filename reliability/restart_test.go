package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestTortureDatabaseRestart restarts a private PostgreSQL and a private
// MariaDB under load: once down for twice the lock expiry (a crash:
// immediate stop / SIGKILL) and once briefly (a clean restart). No two
// holds may overlap; a scope whose renewals cannot succeed in time must
// report ErrLockLost before its expiry; and the same process, with the same
// *gorm.DB, must lock again once the database is back.
func TestTortureDatabaseRestart(t *testing.T) {
	requireTorture(t)
	servers := []struct {
		name  string
		start func(*testing.T) privateServer
	}{{"postgres", startPrivatePostgres}, {"mysql", startPrivateMariaDB}}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { runRestart(t, srv.start(t)) })
	}
}

// outageLog records when the database was down, and errors seen.
type outageLog struct {
	mu      sync.Mutex
	windows [][2]time.Time // [down, up+grace]
	outside map[string]int // errors other than ErrLocked outside every window
	inside  int
}

const outageGrace = 5 * time.Second

func (o *outageLog) down(at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.windows = append(o.windows, [2]time.Time{at, at.Add(time.Hour)})
}

func (o *outageLog) up(at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.windows[len(o.windows)-1][1] = at.Add(outageGrace)
}

// note tallies err: ErrLocked is always fine; other errors only while the
// database is down or just back.
func (o *outageLog) note(op string, err error, at time.Time) {
	if err == nil || errors.Is(err, lockmgr.ErrLocked) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.windows {
		if !at.Before(w[0]) && at.Before(w[1]) {
			o.inside++
			return
		}
	}
	o.outside[op+": "+short(err.Error())]++
}

func runRestart(t *testing.T, srv privateServer) {
	tg := target{Name: srv.Name(), Driver: srv.Driver(), DSN: srv.DSN()}
	db := mustOpen(t, tg)
	table := tableName("lock")
	m := newManager(t, db, table)
	led := newLedger()
	outages := &outageLog{outside: map[string]int{}}

	long, err := m.Acquire(context.Background(), "restart-long", lockmgr.Expires(faultExpiry))
	require.NoError(t, err)
	lh := led.begin("restart-long", "long", long.Main().Fence)
	led.watch(lh, long.Context())

	load := startRestartLoad(m, led, outages, 4, []string{"restart-0", "restart-1"})
	time.Sleep(1500 * time.Millisecond)

	outages.down(time.Now())
	require.NoError(t, srv.Stop(true))
	time.Sleep(2 * faultExpiry)
	require.NoError(t, srv.Start())
	up1 := time.Now()
	outages.up(up1)
	longLostAt, longLost := led.state(lh)
	var longUntil time.Time
	if until, err := readLockedUntil(db, table, "restart-long"); assert.NoError(t, err) {
		longUntil = until
	}
	time.Sleep(3 * time.Second)

	outages.down(time.Now())
	require.NoError(t, srv.Stop(false))
	require.NoError(t, srv.Start())
	up2 := time.Now()
	outages.up(up2)
	time.Sleep(3 * time.Second)
	stats := load.stop()

	holds, lost, overlaps := led.snapshot()
	assert.Empty(t, overlaps, "holds overlapped across a restart")
	require.True(t, longLost, "a scope held across a %v outage was not reported lost", 2*faultExpiry)
	assert.ErrorIs(t, context.Cause(long.Context()), lockmgr.ErrLockLost)
	assert.True(t, longLostAt.Before(longUntil), "scope learned of the loss at %v, after its expiry %v", longLostAt, longUntil)
	_ = long.Close()
	assert.Empty(t, outages.outside, "errors other than ErrLocked while the database was up")
	for g, at := range stats.lastHold {
		assert.True(t, at.After(up2), "goroutine %d never held a lock after the last restart", g)
	}
	recovered := recoverAfter(t, m, "restart-after", 20*time.Second)
	report(t, "restart", map[string]any{
		"db": tg.Name, "outages": 2, "down_ms": (2 * faultExpiry).Milliseconds(), "holds": holds,
		"lost": lost, "overlaps": len(overlaps), "errors_during_outage": outages.inside,
		"long_scope_margin_ms":        longUntil.Sub(longLostAt).Milliseconds(),
		"first_hold_after_restart_ms": stats.firstAfter(up1).Milliseconds(), "recovered_ms": recovered.Milliseconds(),
	})
}

// readLockedUntil reads a name's expiry straight from the table, retrying
// while the pool drops connections the restart broke.
func readLockedUntil(db *gorm.DB, table, name string) (time.Time, error) {
	var err error
	for try := 0; try < 50; try++ {
		var l lockmgr.Lock
		if err = db.Table(table).Where("name = ?", name).Take(&l).Error; err == nil {
			if l.LockedUntil == nil {
				return time.Time{}, fmt.Errorf("%s never expires", name)
			}
			return *l.LockedUntil, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, err
}

// restartLoad is G goroutines taking scopes on a few names.
type restartLoad struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	lastHold []time.Time
	holdsAt  []time.Time
}

type restartStats struct {
	lastHold []time.Time
	holdsAt  []time.Time
}

// firstAfter is how long after t the first hold began.
func (s restartStats) firstAfter(t time.Time) time.Duration {
	for _, at := range s.holdsAt {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return -1
}

func startRestartLoad(m *lockmgr.Manager, led *ledger, outages *outageLog, goroutines int, names []string) *restartLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &restartLoad{cancel: cancel, lastHold: make([]time.Time, goroutines)}
	for g := 0; g < goroutines; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(time.Now().UnixNano() + int64(g)))
			for ctx.Err() == nil {
				if !l.holdOnce(ctx, m, led, outages, names[rng.Intn(len(names))], rng, g) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

func (l *restartLoad) holdOnce(ctx context.Context, m *lockmgr.Manager, led *ledger, outages *outageLog, name string, rng *rand.Rand, g int) bool {
	opCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := m.Acquire(opCtx, name, lockmgr.Expires(faultExpiry), lockmgr.Wait(100*time.Millisecond))
	if err != nil {
		outages.note("Acquire", err, time.Now())
		return false
	}
	h := led.begin(name, fmt.Sprintf("g%d", g), s.Main().Fence)
	release := led.watch(h, s.Context())
	l.mu.Lock()
	l.lastHold[g] = h.start
	l.holdsAt = append(l.holdsAt, h.start)
	l.mu.Unlock()
	d := time.Duration(rng.Intn(50)) * time.Millisecond
	if rng.Intn(10) == 0 {
		d = faultExpiry * 3 / 4
	}
	select {
	case <-time.After(d):
	case <-s.Context().Done():
	case <-ctx.Done():
	}
	release()
	if err := s.Close(); err != nil && !errors.Is(err, lockmgr.ErrNotHeld) && !errors.Is(err, lockmgr.ErrLockLost) {
		outages.note("Scope.Close", err, time.Now())
	}
	return true
}

func (l *restartLoad) stop() restartStats {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return restartStats{lastHold: append([]time.Time(nil), l.lastHold...), holdsAt: append([]time.Time(nil), l.holdsAt...)}
}
