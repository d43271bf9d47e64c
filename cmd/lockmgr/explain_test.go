package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/internal/dsn"
	"github.com/gormlock/lockmgr/pgnotify"
)

// explainJSON runs explain --json on name.
func (c *cli) explainJSON(name string) explainJSON {
	c.t.Helper()
	var out explainJSON
	require.NoError(c.t, json.Unmarshal([]byte(c.ok("explain", name, "--json")), &out))
	return out
}

func TestExplain(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		free := c.explainJSON("deploy")
		assert.Equal(t, "free", free.State)
		assert.True(t, free.Acquirable)
		assert.Nil(t, free.Lock)
		assert.WithinDuration(t, time.Now(), free.DBNow, time.Minute, "the database's clock")
		assert.Contains(t, c.ok("explain", "deploy"), "GetLock:  would succeed: no one holds it\n")

		c.ok("set", "deploy", "-t", "60", "--locked-by", "web1", "--process-id", "4242")
		held := c.explainJSON("deploy")
		assert.Equal(t, "held", held.State)
		assert.False(t, held.Acquirable)
		require.NotNil(t, held.Lock)
		assert.Equal(t, "web1", held.Lock.LockedBy)
		assert.Positive(t, held.Lock.Fence)
		assert.Len(t, held.TokenPrefix, 8)
		require.NotNil(t, held.Lock.ExpiresSeconds)
		assert.InDelta(t, 59, *held.Lock.ExpiresSeconds, 10)
		assert.Regexp(t, `^would fail with ErrLocked: held by "web1" \(pid 4242\) for (59s|1m0s) more, until `+untilRE, held.Reason)
		text := c.ok("explain", "deploy")
		assert.Contains(t, text, "state:    held\n")
		assert.Contains(t, text, "holder:   web1, pid 4242, token "+held.TokenPrefix+"...\n")
		assert.Regexp(t, `(?m)^fence:    `+jsonInt(held.Lock.Fence)+`$`, text)
		assert.Regexp(t, `(?m)^until:    `+untilRE+` \(expires in (59s|1m0s)\)$`, text)

		assertForeverAndExpired(t, c)

		assertNoWaiters(t, c, held, text)
	})
}

// assertNoWaiters checks what explain says of waiters where there are
// none: none seen on PostgreSQL, unknown elsewhere.
func assertNoWaiters(t *testing.T, c *cli, e explainJSON, text string) {
	t.Helper()
	if c.db.name == "postgres" {
		assert.True(t, e.WaitersKnown)
		assert.NotNil(t, e.Waiters)
		assert.Empty(t, e.Waiters)
		assert.Contains(t, text, `waiters:  none seen (pgnotify listeners on channel "lockmgr_`+c.table+`")`)
		return
	}
	assert.False(t, e.WaitersKnown)
	assert.Nil(t, e.Waiters)
	assert.Contains(t, text, "waiters:  unknown (only PostgreSQL with pgnotify can tell)\n")
}

// assertForeverAndExpired: a lock that never expires, and one that has.
func assertForeverAndExpired(t *testing.T, c *cli) {
	t.Helper()
	c.ok("set", "forever", "-k")
	assert.Equal(t, "forever", c.explainJSON("forever").State)
	assert.Contains(t, c.explainJSON("forever").Reason, "never expires")

	c.ok("set", "brief", "-t", "1")
	var gone explainJSON
	require.Eventually(t, func() bool { gone = c.explainJSON("brief"); return gone.State == "expired" }, 20*time.Second, 200*time.Millisecond)
	assert.True(t, gone.Acquirable)
	assert.Contains(t, gone.Reason, "would succeed, taking it over")
	assert.Contains(t, c.ok("explain", "brief"), "state:    expired\n")
}

// jsonInt formats n as explain prints it.
func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestExplainUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	c.ok("migrate")
	for _, args := range [][]string{{"explain"}, {"explain", "a", "b"}, {"explain", strings.Repeat("x", 256)}} {
		r := c.run(args...)
		assert.Equal(t, exitUsage, r.code, "%q: %s", args, r.stderr)
		assert.Empty(t, r.stdout)
	}
}

// TestExplainSeesPgnotifyWaiters: a process waiting for a held name with a
// pgnotify Listener shows up in explain, and goes once it stops waiting.
func TestExplainSeesPgnotifyWaiters(t *testing.T) {
	pgDSN := pgDSNOrSkip(t)
	t.Parallel()
	c := newCLI(t, testDB{"postgres", pgDSN})
	c.ok("migrate")
	c.ok("set", "report", "-t", "60", "--locked-by", "cron1")

	m := pgManager(t, pgDSN, c.table)
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, err := m.GetLock(ctx, "report", lockmgr.Wait(time.Minute))
		waited <- err
	}()
	var e explainJSON
	require.Eventually(t, func() bool { e = c.explainJSON("report"); return len(e.Waiters) == 1 }, 20*time.Second, 200*time.Millisecond,
		"the waiter's listener session in explain")
	assert.Positive(t, e.Waiters[0].PID)
	assert.Contains(t, c.ok("explain", "report"), "waiters:  1 through pgnotify: pid ")
	cancel()
	require.True(t, errors.Is(<-waited, context.Canceled))
	require.Eventually(t, func() bool { return len(c.explainJSON("report").Waiters) == 0 }, 20*time.Second, 200*time.Millisecond,
		"the waiter gone once it stops waiting")

}

// pgDSNOrSkip is LOCKMGR_TEST_POSTGRES_DSN, or skips t.
func pgDSNOrSkip(t *testing.T) string {
	t.Helper()
	d := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if d == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set")
	}
	return d
}

// pgManager is a Manager on table in the PostgreSQL database at pgDSN,
// with a pgnotify Listener; both close when t ends.
func pgManager(t *testing.T, pgDSN, table string) *lockmgr.Manager {
	t.Helper()
	dbi, err := dsn.Parse(pgDSN, 5*time.Second)
	require.NoError(t, err)
	sqlDB, err := sql.Open(dbi.Driver, dbi.DSN)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(dbi.Dialector(sqlDB), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	l, err := pgnotify.Listen(context.Background(), pgDSN)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	m, err := lockmgr.New(db, lockmgr.WithTable(table), lockmgr.WithNotifier(l))
	require.NoError(t, err)
	return m
}
