package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// crashConfig is what the crash worker is told: take Names and hold them.
type crashConfig struct {
	childTarget
	Names  []string
	Expiry time.Duration
}

// runCrashChild takes every name (even ones through a keep-alive scope,
// odd ones with GetLock), prints READY and the fences, and blocks until
// it is killed.
func runCrashChild(raw string) int {
	var cfg crashConfig
	m, _, code := openChild(raw, &cfg, &cfg.childTarget)
	if code != 0 {
		return code
	}
	ctx := context.Background()
	fences := map[string]int64{}
	for i, name := range cfg.Names {
		if i%2 == 0 {
			s, err := m.Acquire(ctx, name, lockmgr.Expires(cfg.Expiry))
			if err != nil {
				fmt.Fprintln(os.Stderr, "Acquire:", err)
				return 2
			}
			fences[name] = s.Main().Fence
			continue
		}
		l, err := m.GetLock(ctx, name, lockmgr.Expires(cfg.Expiry))
		if err != nil {
			fmt.Fprintln(os.Stderr, "GetLock:", err)
			return 2
		}
		fences[name] = l.Fence
	}
	out, _ := json.Marshal(fences)
	fmt.Printf("READY %s\n", out)
	select {} // hold until SIGKILL
}

// TestTortureCrash SIGKILLs a process while it holds locks, some kept
// alive by scopes. Nobody may get them before their expiry (as left in the
// table by the dead holder's last write); someone must get them soon after.
func TestTortureCrash(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		if tortureMode() == "" && tg.Driver != "sqlite" {
			t.Skip("set LOCKMGR_TORTURE=short to crash holders on server databases")
		}
		const expiry = 3 * time.Second
		db := mustOpen(t, tg)
		lockT := tableName("lock")
		m := newManager(t, db, lockT)
		names := []string{"crash-0", "crash-1", "crash-2", "crash-3"}

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := startChild(ctx, t, "crash", crashConfig{childTarget: childTarget{Driver: tg.Driver, DSN: tg.DSN, LockTable: lockT}, Names: names, Expiry: expiry})
		fences := readReady(t, c)
		time.Sleep(expiry/2 + 200*time.Millisecond) // let the scopes renew at least once
		require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
		_ = c.cmd.Wait()
		time.Sleep(200 * time.Millisecond) // let a write in flight at the kill land
		killedAt := time.Now()
		until := lockedUntil(t, db, lockT, names)

		results := contend(t, m, names, expiry)
		maxDelay := time.Duration(0)
		for i, name := range names {
			r := results[name]
			require.NoError(t, r.err, name)
			early := until[name].Sub(r.at)
			assert.True(t, !r.at.Before(until[name].Add(-time.Millisecond)),
				"%s taken %v before the dead holder's expiry %v", name, early, until[name])
			assert.Greater(t, r.fence, fences[name], "%s: fence did not grow across the takeover", name)
			delay := r.at.Sub(until[name])
			maxDelay = max(maxDelay, delay)
			assert.Less(t, delay, 3*time.Second, "%s taken only %v after its expiry (way %d)", name, delay, i%2)
			assert.Positive(t, r.refused, "%s: no contender was refused before the expiry", name)
		}
		report(t, "crash", map[string]any{
			"db": tg.Name, "names": len(names), "expiry_s": expiry.Seconds(),
			"expiry_left_at_kill_ms": until[names[0]].Sub(killedAt).Milliseconds(),
			"max_takeover_delay_ms":  maxDelay.Milliseconds(), "early_takeovers": 0,
		})
	})
}

// readReady waits for the crash worker's READY line and returns its fences.
func readReady(t *testing.T, c *child) map[string]int64 {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(c.stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				lines <- strings.TrimPrefix(sc.Text(), "READY ")
				return
			}
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		require.True(t, ok, "crash worker ended before READY:\n%s", c.stderr.String())
		var fences map[string]int64
		require.NoError(t, json.Unmarshal([]byte(line), &fences))
		return fences
	case <-time.After(time.Minute):
		t.Fatalf("crash worker never got ready:\n%s", c.stderr.String())
		return nil
	}
}

// lockedUntil reads each name's expiry straight from the table.
func lockedUntil(t *testing.T, db *gorm.DB, table string, names []string) map[string]time.Time {
	t.Helper()
	var rows []lockmgr.Lock
	require.NoError(t, db.Table(table).Where("name IN ?", names).Find(&rows).Error)
	out := map[string]time.Time{}
	for _, r := range rows {
		require.NotNil(t, r.LockedUntil, r.Name)
		out[r.Name] = *r.LockedUntil
	}
	require.Len(t, out, len(names), "rows of the dead holder")
	return out
}

type takeover struct {
	at      time.Time
	fence   int64
	refused int
	err     error
}

// contend tries every name until it is taken: even names by polling
// GetLock every 20 ms, odd ones by one Acquire with Wait.
func contend(t *testing.T, m *lockmgr.Manager, names []string, expiry time.Duration) map[string]takeover {
	t.Helper()
	var mu sync.Mutex
	out := map[string]takeover{}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r takeover
			if i%2 == 0 {
				r = pollGetLock(m, name, expiry+10*time.Second)
			} else {
				r = waitAcquire(m, name, expiry+10*time.Second)
			}
			mu.Lock()
			out[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func pollGetLock(m *lockmgr.Manager, name string, limit time.Duration) takeover {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var r takeover
	for ctx.Err() == nil {
		l, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
		if err == nil {
			r.at, r.fence = time.Now(), l.Fence
			_ = m.Release(context.Background(), l)
			return r
		}
		if !errors.Is(err, lockmgr.ErrLocked) {
			r.err = err
			return r
		}
		r.refused++
		time.Sleep(20 * time.Millisecond)
	}
	r.err = fmt.Errorf("%s never taken in %v", name, limit)
	return r
}

func waitAcquire(m *lockmgr.Manager, name string, limit time.Duration) takeover {
	var r takeover
	if ok, err := m.IsLocked(context.Background(), name); err != nil || !ok {
		r.err = fmt.Errorf("%s not reported locked before the takeover (err %v)", name, err)
		return r
	}
	r.refused = 1
	s, err := m.Acquire(context.Background(), name, lockmgr.Expires(time.Minute), lockmgr.Wait(limit))
	if err != nil {
		r.err = err
		return r
	}
	r.at, r.fence = time.Now(), s.Main().Fence
	_ = s.Close()
	return r
}
