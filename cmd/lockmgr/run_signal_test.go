package main

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr/internal/dsn"
)

// openDB opens the database at dsnText for a test's own statements.
func openDB(t *testing.T, dsnText string) *gorm.DB {
	t.Helper()
	dbi, err := dsn.Parse(dsnText, 5*time.Second)
	require.NoError(t, err)
	db, err := gorm.Open(dbi.Dialector(nil), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// assertNoOrphan checks, for a while, that name is free or held by holder
// only: once every lockmgr that tried it has exited, a row held by anyone
// else is held by a token nobody has. It keeps looking because a server can
// commit an acquisition after its client gave up.
func assertNoOrphan(t *testing.T, c *cli, name, holder string) {
	t.Helper()
	assert.Never(t, func() bool {
		l, held := c.listJSON()[name]
		if held && l.LockedBy != holder {
			t.Logf("%s is held by %q (pid %s) after every lockmgr that tried it exited", name, l.LockedBy, processText(l.LockProcess))
			return true
		}
		return false
	}, time.Second, 100*time.Millisecond)
}

// waitBlocked waits until a statement on c's table is in progress, which
// behind the blocker's row lock means waiting for it, as far as the
// database shows it (SQLite does not: there it sleeps). It
// gives up quietly after a while: with lock timeouts, attempts may fail
// fast and be retried instead of waiting.
func waitBlocked(t *testing.T, c *cli, db *gorm.DB) {
	t.Helper()
	var probe string
	switch c.db.name {
	case "postgres":
		probe = "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE ?"
	case "mysql":
		probe = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE command IN ('Query', 'Execute') AND info LIKE ? AND info NOT LIKE '%PROCESSLIST%'"
	default:
		time.Sleep(time.Second) // connected, and its attempt waits for the write lock
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int64
		require.NoError(t, db.Raw(probe, "%"+c.table+"%").Scan(&n).Error)
		if n > 0 {
			return
		}
	}
	t.Logf("saw no statement waiting for the row in 5s")
}

// TestRunInterruptedLeavesNoOrphan: SIGINT to a "run --wait" whose attempt
// is blocked behind another transaction's row lock, and lands before the
// server runs it. When the row was free (expired) under the blocker, the
// attempt wins once the blocker commits, after lockmgr was told to give
// up: lockmgr must give that lock back. When the row was held, it stays
// with its holder.
func TestRunInterruptedLeavesNoOrphan(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		db := openDB(t, c.db.dsn)
		for _, expired := range []bool{true, false} {
			name := fmt.Sprintf("job-expired-%v", expired)
			if expired {
				c.ok("set", name, "--locked-by", "other-host", "-t", "0.3")
				time.Sleep(500 * time.Millisecond)
			} else {
				c.ok("set", name, "--locked-by", "other-host", "-t", "300")
			}
			blocker := db.Begin()
			require.NoError(t, blocker.Error)
			require.NoError(t, blocker.Exec("UPDATE "+c.table+" SET locked_by = locked_by WHERE name = ?", name).Error)

			p := c.start("run", name, "-w", "60s", "--", "sh", "-c", "echo ran")
			waitBlocked(t, c, db)
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
			time.Sleep(50 * time.Millisecond) // lockmgr has given up; its attempt's statement waits on
			require.NoError(t, blocker.Commit().Error)

			assert.Equal(t, 128+2, p.wait(30*time.Second), "expired %v: %s", expired, p.stderr.String())
			assert.Empty(t, p.stdout(), "the command did not run")
			assert.Equal(t, fmt.Sprintf("lockmgr: got SIGINT while waiting for lock '%s'; sh not run\n", name), p.stderr.String())
			assertNoOrphan(t, c, name, "other-host")
			if !expired {
				assert.Equal(t, "other-host", c.listJSON()[name].LockedBy, "the holder keeps its lock")
			}
		}
	})
}

// TestRunInterruptedAsItAcquires: SIGINT at moments around the one a
// "run --wait" takes the lock, as the holder's lock expires. Whether
// lockmgr got the lock first (and ran the command, which the forwarded
// SIGINT ends) or not, once it has exited the lock is free.
func TestRunInterruptedAsItAcquires(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		for i := range 3 {
			name := fmt.Sprintf("job%d", i)
			c.ok("set", name, "--locked-by", "other-host", "-t", "0.8")
			set := time.Now()
			p := c.start("run", name, "-w", "30s", "--", "sleep", "10")
			time.Sleep(time.Until(set.Add(700*time.Millisecond + rand.N(400*time.Millisecond))))
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
			assert.Equal(t, 128+2, p.wait(30*time.Second), p.stderr.String())
			assertNoOrphan(t, c, name, "other-host")
			assert.NotContains(t, c.listJSON(), name, "expired, and lockmgr let go")
		}
	})
}
