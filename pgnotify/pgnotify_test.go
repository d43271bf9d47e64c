package pgnotify_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup returns a Manager with a Listener on a fresh table, or skips when
// no PostgreSQL is configured (pgnotify is PostgreSQL only).
func setup(t *testing.T) (dsn string, db *gorm.DB, m *lockmgr.Manager, l *pgnotify.Listener, table string) {
	dsn = os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set: pgnotify needs PostgreSQL")
	}
	var err error
	db, err = gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	var b [5]byte
	_, _ = rand.Read(b[:])
	table = "lockmgr_n_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
	l, err = pgnotify.Listen(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	m, err = lockmgr.New(db, lockmgr.WithTable(table), lockmgr.WithNotifier(l))
	require.NoError(t, err)
	require.NoError(t, m.AutoMigrate(t.Context()))
	return dsn, db, m, l, table
}

// connect opens a connection of the test's own, closed when it ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// watched reports whether some session holds the shared advisory lock by
// which a process announces that it waits for name on channel.
func watched(t *testing.T, conn *pgx.Conn, channel, name string) bool {
	t.Helper()
	var free bool
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", channel, name).Scan(&free))
	if free {
		var ok bool
		require.NoError(t, conn.QueryRow(t.Context(), "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", channel, name).Scan(&ok))
	}
	return !free
}

// TestReleaseNotifiesOnlyWatchedNames: a release or unlock NOTIFYs, in the
// statement that deletes the row, only a name some process watches; an
// unwatched name's release sends nothing, and a watch ends a moment after
// its last watcher leaves.
func TestReleaseNotifiesOnlyWatchedNames(t *testing.T) {
	dsn, _, m, l, table := setup(t)
	ctx, ch := t.Context(), l.Channel(table)
	conn := connect(t, dsn)
	_, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize())
	require.NoError(t, err)
	next := func() string {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		require.NoError(t, err)
		// lockmgr prefixes the name with "\x1e<16 hex digits of its process>\x1e".
		if p := n.Payload; len(p) > 18 && p[0] == 0x1e && p[17] == 0x1e {
			return p[18:]
		}
		return n.Payload
	}

	stopJob := l.Watch(ch, "job")
	stopJob2 := l.Watch(ch, "job2")
	require.Eventually(t, func() bool { return watched(t, conn, ch, "job") && watched(t, conn, ch, "job2") },
		10*time.Second, 5*time.Millisecond, "Watch takes the shared lock")
	assert.False(t, watched(t, conn, ch, "free"))

	free, err := m.GetLock(ctx, "free")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, free)) // nobody watches: no NOTIFY
	lk, err := m.GetLock(ctx, "job")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, lk))
	assert.Equal(t, "job", next(), "the watched release notifies; the unwatched one before it did not")
	_, err = m.GetLock(ctx, "job2")
	require.NoError(t, err)
	require.NoError(t, m.Unlock(ctx, "job2"))
	assert.Equal(t, "job2", next(), "Unlock notifies too")
	require.ErrorIs(t, m.Release(ctx, lk), lockmgr.ErrNotHeld, "a stale release still reports ErrNotHeld")

	stopJob()
	stopJob() // a second stop is harmless
	require.Eventually(t, func() bool { return !watched(t, conn, ch, "job") }, 10*time.Second, 20*time.Millisecond,
		"the watch ends after its last watcher leaves")
	assert.True(t, watched(t, conn, ch, "job2"), "job2 is still watched")
	stopJob2()
	lk, err = m.GetLock(ctx, "job")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, lk))
	_, err = conn.Exec(ctx, "SELECT pg_notify($1, 'marker')", ch)
	require.NoError(t, err)
	assert.Equal(t, "marker", next(), "a name no longer watched is not notified")
}

// TestWaiterWatchesItsName: a waiting GetLock makes its process watch the
// name, through the Manager's Listener, until it has the lock; the watch
// survives the listener's reconnection.
func TestWaiterWatchesItsName(t *testing.T) {
	dsn, _, m, l, table := setup(t)
	ctx, ch := t.Context(), l.Channel(table)
	conn := connect(t, dsn)
	lk, err := m.GetLock(ctx, "job")
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		l, err := m.GetLock(ctx, "job", lockmgr.Wait(time.Minute))
		if err == nil {
			err = m.Release(ctx, l)
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return watched(t, conn, ch, "job") }, 10*time.Second, 5*time.Millisecond,
		"the waiter's process watches the name")

	var pid int32
	require.NoError(t, conn.QueryRow(ctx, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' "+
		"AND classid::bigint = hashtext($1)::bigint & 4294967295 AND objid::bigint = hashtext($2)::bigint & 4294967295",
		ch, "job").Scan(&pid))
	_, err = conn.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var now int32
		err := conn.QueryRow(ctx, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' "+
			"AND classid::bigint = hashtext($1)::bigint & 4294967295", ch).Scan(&now)
		return err == nil && now != pid
	}, 20*time.Second, 20*time.Millisecond, "the reconnected listener watches the name again")

	require.NoError(t, m.Release(ctx, lk))
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
	require.Eventually(t, func() bool { return !watched(t, conn, ch, "job") }, 10*time.Second, 20*time.Millisecond,
		"the watch ends once nobody waits")
}

func TestWaiterWokenByAnotherProcess(t *testing.T) {
	_, db, m, l, table := setup(t)
	ctx := t.Context()
	_, err := m.GetLock(ctx, "job")
	require.NoError(t, err)
	got := make(chan time.Time, 1)
	go func() {
		_, err := m.GetLock(ctx, "job", lockmgr.Wait(30*time.Second))
		assert.NoError(t, err)
		got <- time.Now()
	}()
	time.Sleep(2 * time.Second) // the waiter's backoff reaches its 1 s cap
	// Release as another process would: no in-process wake-up, only NOTIFY.
	released := time.Now()
	err = db.Exec("WITH d AS (DELETE FROM "+table+" WHERE name = ? RETURNING name) SELECT count(*) FROM d, pg_notify(?, d.name)",
		"job", l.Channel(table)).Error
	require.NoError(t, err)
	select {
	case at := <-got:
		assert.Less(t, at.Sub(released), 300*time.Millisecond, "woken by NOTIFY, not by backoff")
		t.Logf("hand-off after release: %v", at.Sub(released))
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
}

func TestChannelNames(t *testing.T) {
	var l pgnotify.Listener
	assert.Equal(t, "lockmgr_lockmgr_lock", l.Channel("lockmgr_lock"))
	long := l.Channel("s_123456789012345678901234567890.t_12345678901234567890123456789012345")
	assert.LessOrEqual(t, len(long), 63)
}

// withExecMode returns dsn (a URL) with pgx's default_query_exec_mode set,
// or unchanged for mode "".
func withExecMode(t *testing.T, dsn, mode string) string {
	if mode == "" {
		return dsn
	}
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("default_query_exec_mode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestListenRefusesTransactionPooler: through PgBouncer in transaction
// mode notifications never arrive, so Listen says so within seconds,
// whatever pgx exec mode the DSN asks for.
func TestListenRefusesTransactionPooler(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_PGBOUNCER_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_PGBOUNCER_DSN is not set: start one with .ci/engines/pgbouncer.sh (CI does)")
	}
	for _, mode := range []string{"", "simple_protocol", "exec", "cache_describe"} {
		t.Run("mode="+mode, func(t *testing.T) {
			start := time.Now()
			l, err := pgnotify.Listen(t.Context(), withExecMode(t, dsn, mode))
			if l != nil {
				_ = l.Close()
			}
			require.ErrorIs(t, err, pgnotify.ErrNotDelivered)
			assert.Contains(t, err.Error(), "direct or session-pooled")
			assert.Less(t, time.Since(start), 15*time.Second, "reported within seconds")
			t.Logf("%v after %v", err, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestListenThroughSessionPooler: a session pooler gives the listener a
// server session of its own, so notifications arrive.
func TestListenThroughSessionPooler(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_PGBOUNCER_SESSION_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_PGBOUNCER_SESSION_DSN is not set: start one with PGBOUNCER_POOL_MODE=session .ci/engines/pgbouncer.sh (CI does)")
	}
	l, err := pgnotify.Listen(t.Context(), dsn)
	require.NoError(t, err)
	defer l.Close()
	assert.NoError(t, l.Err())
}

// TestWaiterFallsBackWhenListenerFails: a listener that stopped receiving
// leaves waiters on their backoff, not asleep, and the Manager's logger
// hears of it.
func TestWaiterFallsBackWhenListenerFails(t *testing.T) {
	_, db, _, l, table := setup(t)
	ctx := t.Context()
	var logs pgnotify.SyncBuffer
	m, err := lockmgr.New(db, lockmgr.WithTable(table), lockmgr.WithNotifier(l),
		lockmgr.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	_, err = m.GetLock(ctx, "job")
	require.NoError(t, err)
	require.NoError(t, l.Close()) // stops receiving; waiters must not depend on it
	require.ErrorIs(t, l.Err(), pgnotify.ErrNotDelivered)
	got := make(chan time.Time, 1)
	go func() {
		_, err := m.GetLock(ctx, "job", lockmgr.Wait(30*time.Second))
		assert.NoError(t, err)
		got <- time.Now()
	}()
	time.Sleep(500 * time.Millisecond)
	released := time.Now()
	require.NoError(t, db.Exec("DELETE FROM "+table+" WHERE name = ?", "job").Error)
	select {
	case at := <-got:
		assert.Less(t, at.Sub(released), 5*time.Second, "backoff, capped at 1 s, finds the lock free")
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
	assert.Contains(t, logs.String(), "notifier is not delivering", "the Manager's logger hears of it")
}
