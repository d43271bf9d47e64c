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

func TestReleaseNotifiesInTheSameStatement(t *testing.T) {
	dsn, _, m, l, table := setup(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel(table)}.Sanitize())
	require.NoError(t, err)

	lk, err := m.GetLock(ctx, "job")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, lk))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	require.NoError(t, err)
	assert.Equal(t, "job", n.Payload)

	_, err = m.GetLock(ctx, "job2")
	require.NoError(t, err)
	require.NoError(t, m.Unlock(ctx, "job2"))
	n, err = conn.WaitForNotification(wctx)
	require.NoError(t, err)
	assert.Equal(t, "job2", n.Payload, "Unlock notifies too")
	require.ErrorIs(t, m.Release(ctx, lk), lockmgr.ErrNotHeld, "a stale release still reports ErrNotHeld")
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
