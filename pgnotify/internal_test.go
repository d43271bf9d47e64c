package pgnotify

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProbeNoticesStoppedListening makes the listener's connection quietly
// stop listening (UNLISTEN *, as a pooler's reset query would): its next
// self-probe does not come back, Err and the logger say so, and the
// listener reconnects and receives again.
func TestProbeNoticesStoppedListening(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set: pgnotify needs PostgreSQL")
	}
	var logs syncBuffer
	l, err := Listen(t.Context(), dsn, WithProbe(300*time.Millisecond, 2*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer l.Close()
	var once sync.Once
	l.mu.Lock()
	l.onListen = func(c *pgx.Conn) {
		once.Do(func() { _, err := c.Exec(t.Context(), "UNLISTEN *", simple); assert.NoError(t, err) })
	}
	l.mu.Unlock()
	got := make(chan string, 16)
	stop := l.Subscribe("lockmgr_probe_test", func(name string) { got <- name })
	defer stop()

	// Err is set only until the reconnection succeeds, about 10 ms on a
	// local server: the log keeps the record.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "not receiving notifications") },
		20*time.Second, 20*time.Millisecond, "a connection that stopped listening is noticed")
	assert.Contains(t, logs.String(), ErrNotDelivered.Error())
	require.Eventually(t, func() bool { return l.Err() == nil && strings.Contains(logs.String(), "receiving notifications again") },
		30*time.Second, 20*time.Millisecond, "the listener reconnects and receives again")

	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		_, err := conn.Exec(t.Context(), "SELECT pg_notify('lockmgr_probe_test', 'job')")
		require.NoError(t, err)
		select {
		case n := <-got:
			return n == "job"
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, 20*time.Second, time.Millisecond, "subscribers hear notifications after the reconnect")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestProbeRefusesTransactionPooler: when the session check does not catch
// a transaction pooler (its pool handed out another server connection),
// the notification probe does.
func TestProbeRefusesTransactionPooler(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_PGBOUNCER_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_PGBOUNCER_DSN is not set: start one with .ci/engines/pgbouncer.sh (CI does)")
	}
	skipSessionCheck = true
	defer func() { skipSessionCheck = false }()
	start := time.Now()
	l, err := Listen(t.Context(), dsn, WithProbe(time.Minute, 2*time.Second))
	if l != nil {
		_ = l.Close()
	}
	require.ErrorIs(t, err, ErrNotDelivered)
	assert.Contains(t, err.Error(), "did not arrive within 2s")
	assert.Less(t, time.Since(start), 15*time.Second)
}

// TestProbeKeepsAHealthyConnection: probes every 100 ms on a direct
// connection all come back; the listener never reconnects.
func TestProbeKeepsAHealthyConnection(t *testing.T) {
	dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("LOCKMGR_TEST_POSTGRES_DSN is not set: pgnotify needs PostgreSQL")
	}
	var logs syncBuffer
	l, err := Listen(t.Context(), dsn, WithProbe(100*time.Millisecond, 5*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer l.Close()
	var conns sync.Map
	l.mu.Lock()
	l.onListen = func(c *pgx.Conn) { conns.Store(c, true) }
	l.mu.Unlock()
	stop := l.Subscribe("lockmgr_probe_healthy", func(string) {})
	defer stop()
	time.Sleep(2 * time.Second)
	assert.NoError(t, l.Err())
	assert.Empty(t, logs.String(), "no problem logged")
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	assert.Equal(t, 1, n, "one connection throughout")
}
