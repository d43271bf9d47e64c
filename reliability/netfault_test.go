package reliability

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// faultExpiry is the expiry of the locks the fault tests hold; the default
// keep-alive renews every third of it.
const faultExpiry = 2 * time.Second

// faultSetup is a holder that reaches the database through a fault proxy
// and a contender that reaches it directly, on one lock table.
type faultSetup struct {
	proxy     *faultProxy
	holder    *lockmgr.Manager // through the proxy
	contender *lockmgr.Manager // direct
}

func newFaultSetup(t *testing.T, tg target) *faultSetup {
	t.Helper()
	direct := mustOpen(t, tg)
	table := tableName("lock")
	contender := newManager(t, direct, table)
	_, upstream, err := proxiedDSN(tg, "127.0.0.1:1")
	require.NoError(t, err)
	p := newFaultProxy(t, upstream)
	dsn, _, err := proxiedDSN(tg, p.Addr())
	require.NoError(t, err)
	proxied := mustOpen(t, target{Name: tg.Name, Driver: tg.Driver, DSN: dsn})
	holder, err := lockmgr.New(proxied, lockmgr.WithTable(table))
	require.NoError(t, err)
	return &faultSetup{proxy: p, holder: holder, contender: contender}
}

// TestTortureNetworkFaults puts a fault-injecting TCP proxy between a
// holder and the database: latency beyond the expiry, a partition, and
// connections dropped again and again. A holder cut off must learn it lost
// the lock (Scope.Context cancelled with ErrLockLost) before a contender
// that reaches the database directly can take it; the margin is reported.
func TestTortureNetworkFaults(t *testing.T) {
	requireTorture(t)
	forEachServerDB(t, func(t *testing.T, tg target) {
		t.Run("latency", func(t *testing.T) {
			runCutOff(t, tg, func(p *faultProxy) error { return p.latency(int(2 * faultExpiry / time.Millisecond)) })
		})
		t.Run("partition", func(t *testing.T) {
			runCutOff(t, tg, func(p *faultProxy) error { return p.partition() })
		})
		t.Run("dropped", func(t *testing.T) { runDropped(t, tg) })
	})
}

// runCutOff cuts the holder off with fault and checks who learns what when.
func runCutOff(t *testing.T, tg target, fault func(*faultProxy) error) {
	fs := newFaultSetup(t, tg)
	led := newLedger()
	name := "cut-" + suffix()
	s, err := fs.holder.Acquire(context.Background(), name, lockmgr.Expires(faultExpiry))
	require.NoError(t, err)
	h := led.begin(name, "holder", s.Main().Fence)
	led.watch(h, s.Context())
	time.Sleep(300 * time.Millisecond)

	faultAt := time.Now()
	require.NoError(t, fault(fs.proxy))
	tk := takeOver(fs.contender, led, name, 3*faultExpiry+5*time.Second)
	require.NoError(t, tk.err)
	lostAt, lost := led.state(h)
	require.True(t, lost, "the contender took the lock while the cut-off holder's scope was still open")
	assert.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
	margin := tk.at.Sub(lostAt)
	assert.Positive(t, margin, "the holder learned of the loss only after the takeover")
	assert.Less(t, tk.at.Sub(faultAt), faultExpiry+3*time.Second, "takeover came late")
	_, _, overlaps := led.snapshot()
	assert.Empty(t, overlaps)

	fs.proxy.heal()
	closeErr := closeWithin(s, 30*time.Second)
	if closeErr != nil && !errors.Is(closeErr, lockmgr.ErrNotHeld) {
		assert.ErrorIs(t, closeErr, lockmgr.ErrLockLost, "closing the lost scope")
	}
	held, err := fs.contender.IsLocked(context.Background(), name)
	require.NoError(t, err)
	assert.True(t, held, "closing the lost scope released the new holder's lock")
	assert.NoError(t, fs.contender.Release(context.Background(), tk.lock), "the new holder no longer owned its lock")
	recovered := recoverAfter(t, fs.holder, name+"-after", 20*time.Second)

	report(t, "netfault", map[string]any{
		"db": tg.Name, "expiry_ms": faultExpiry.Milliseconds(),
		"detect_after_fault_ms":   lostAt.Sub(faultAt).Milliseconds(),
		"takeover_after_fault_ms": tk.at.Sub(faultAt).Milliseconds(),
		"margin_ms":               float64(margin.Microseconds()) / 1000,
		"overlaps":                len(overlaps), "recovered_ms": recovered.Milliseconds(),
	})
}

// runDropped drops every holder connection every 250 ms for twice the
// expiry while a contender keeps trying. Either the scope survives (its
// renewals retried on new connections) and the contender never gets in,
// or the holder learns of the loss before the contender gets in.
func runDropped(t *testing.T, tg target) {
	fs := newFaultSetup(t, tg)
	led := newLedger()
	name := "drop-" + suffix()
	s, err := fs.holder.Acquire(context.Background(), name, lockmgr.Expires(faultExpiry))
	require.NoError(t, err)
	h := led.begin(name, "holder", s.Main().Fence)
	release := led.watch(h, s.Context())

	stopAt := time.Now().Add(2*faultExpiry + 500*time.Millisecond)
	tkc := make(chan takeoverResult, 1)
	go func() { tkc <- takeOver(fs.contender, led, name, time.Until(stopAt)+faultExpiry) }()
	drops := 0
	for time.Now().Before(stopAt) {
		require.NoError(t, fs.proxy.dropConnections())
		drops++
		time.Sleep(250 * time.Millisecond)
	}
	tk := <-tkc
	_, _, overlaps := led.snapshot()
	assert.Empty(t, overlaps)
	survived := s.Context().Err() == nil
	margin := time.Duration(0)
	if survived {
		require.Error(t, tk.err, "the contender got a lock its holder still held")
		release()
		assert.NoError(t, closeWithin(s, 30*time.Second))
	} else {
		require.NoError(t, tk.err, "the holder lost its lock but nobody could take it")
		lostAt, _ := led.state(h)
		margin = tk.at.Sub(lostAt)
		assert.Positive(t, margin, "the holder learned of the loss only after the takeover")
		_ = closeWithin(s, 30*time.Second)
		assert.NoError(t, fs.contender.Release(context.Background(), tk.lock))
	}
	recovered := recoverAfter(t, fs.holder, name+"-after", 20*time.Second)
	report(t, "netfault-drop", map[string]any{
		"db": tg.Name, "expiry_ms": faultExpiry.Milliseconds(), "drops": drops,
		"scope_survived": survived, "margin_ms": float64(margin.Microseconds()) / 1000,
		"overlaps": len(overlaps), "recovered_ms": recovered.Milliseconds(),
	})
}

type takeoverResult struct {
	at   time.Time
	lock *lockmgr.Lock
	err  error
}

// takeOver polls GetLock every 10 ms until it wins name, then opens a
// ledger hold at once (an overlap if the old holder's is still open).
func takeOver(m *lockmgr.Manager, led *ledger, name string, limit time.Duration) takeoverResult {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for ctx.Err() == nil {
		l, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
		if err == nil {
			led.begin(name, "contender", l.Fence)
			return takeoverResult{at: time.Now(), lock: l}
		}
		if !errors.Is(err, lockmgr.ErrLocked) && ctx.Err() == nil {
			return takeoverResult{err: err}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return takeoverResult{err: fmt.Errorf("%s not taken within %v", name, limit)}
}

// closeWithin closes s, failing if Close hangs.
func closeWithin(s *lockmgr.Scope, limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("Scope.Close hung for %v", limit)
	}
}

// recoverAfter shows the Manager works again after a fault: it takes and
// releases name, retrying connection errors for up to limit, and returns
// how long that took.
func recoverAfter(t *testing.T, m *lockmgr.Manager, name string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var lastErr error
	for time.Since(start) < limit {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
		if err == nil {
			err = m.Release(ctx, l)
			cancel()
			require.NoError(t, err)
			return time.Since(start)
		}
		cancel()
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the Manager did not work again within %v: %v", limit, lastErr)
	return 0
}
