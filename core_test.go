package lockmgr_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// collected is a list of statements appended to from several goroutines
// and taken whole.
type collected struct {
	mu    sync.Mutex
	stmts []string
}

func (c *collected) add(q string) {
	c.mu.Lock()
	c.stmts = append(c.stmts, q)
	c.mu.Unlock()
}

func (c *collected) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stmts
	c.stmts = nil
	return s
}

// counter is a connection pool counting the statements run on it and on
// its transactions (lockmgr's own go to the pool directly, GORM's through
// it), and the transactions it begins.
type counter struct {
	collected
	*sql.DB
	begins atomic.Int64
}

func (c *counter) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.add(q)
	return c.DB.QueryContext(ctx, q, args...)
}

func (c *counter) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	c.add(q)
	return c.DB.ExecContext(ctx, q, args...)
}

func (c *counter) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	c.add(q)
	return c.DB.QueryRowContext(ctx, q, args...)
}

func (c *counter) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	c.begins.Add(1)
	tx, err := c.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingTx{Tx: tx, c: c}, nil
}

// countingTx is a transaction of a counter.
type countingTx struct {
	*sql.Tx
	c *counter
}

func (t *countingTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	t.c.add(q)
	return t.Tx.QueryContext(ctx, q, args...)
}

func (t *countingTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	t.c.add(q)
	return t.Tx.ExecContext(ctx, q, args...)
}

func (t *countingTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	t.c.add(q)
	return t.Tx.QueryRowContext(ctx, q, args...)
}

// countingManager is e's Manager on a session whose statements and
// transactions are counted.
func (e *env) countingManager() (*lockmgr.Manager, *counter) {
	sqlDB, err := e.db.DB()
	require.NoError(e.t, err)
	c := &counter{DB: sqlDB}
	db := e.db.Session(&gorm.Session{NewDB: true, Context: context.Background()})
	db.Statement.ConnPool = c
	m, err := lockmgr.New(db, lockmgr.WithTable(e.table))
	require.NoError(e.t, err)
	return m, c
}

func TestHotPathsAreOneStatement(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m, c := e.countingManager()
		ctx := e.ctx
		check := func(what string, err error) {
			t.Helper()
			require.NoError(t, err)
			if e.kind == "sqlite" && what != "IsLocked" {
				// A write lowers busy_timeout around itself, in one short
				// transaction on one connection (lockwait.go).
				stmts := slices.DeleteFunc(c.take(), func(q string) bool { return strings.HasPrefix(q, "PRAGMA busy_timeout") })
				assert.Len(t, stmts, 1, "%s runs one statement, between two PRAGMA busy_timeout", what)
				assert.EqualValues(t, 1, c.begins.Swap(0), "%s on SQLite runs one transaction", what)
				return
			}
			assert.Len(t, c.take(), 1, "%s runs one statement", what)
			assert.Zero(t, c.begins.Load(), "%s runs no transaction", what)
		}
		// The first call checks the table, and asks a MariaDB server once
		// whether it is a Galera node.
		_, err := m.IsLocked(ctx, "warm-up")
		require.NoError(t, err)
		assert.NotEmpty(t, c.take(), "the first call checks the table")
		c.begins.Store(0)
		acquired := func(what string, err error) {
			t.Helper()
			if !e.onTiDB() {
				check(what, err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, c.take(), 4, "%s on TiDB: lock the name's row (NOWAIT), raise the fence bucket, upsert, read back", what)
			assert.EqualValues(t, 1, c.begins.Swap(0), "%s on TiDB runs one transaction", what)
		}
		l, err := m.GetLock(ctx, "hot")
		acquired("GetLock", err)
		_, err = m.IsLocked(ctx, "hot")
		check("IsLocked", err)
		_, err = m.Renew(ctx, l)
		check("Renew", err)
		check("Release", m.Release(ctx, l))
		check("Unlock", m.Unlock(ctx, "hot"))
		_, err = m.GetLock(ctx, "hot")
		acquired("GetLock of a free name after a release", err)
		_, err = m.GetLock(ctx, "hot")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		if e.onTiDB() {
			assert.Len(t, c.take(), 3, "a contended GetLock on TiDB: lock the row (NOWAIT), bump, upsert, roll back")
			return
		}
		if e.kind == "sqlite" {
			c.begins.Store(0)
			assert.Len(t, c.take(), 3, "a contended GetLock on SQLite: PRAGMA, upsert, PRAGMA")
			return
		}
		assert.Len(t, c.take(), 1, "a contended GetLock runs one statement")
	})
}

func TestBadInputRunsNoSQL(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m, c := e.countingManager()
		ctx := e.ctx
		for _, name := range []string{"", strings.Repeat("x", 256), "bad\xff", "nul\x00"} {
			_, err := m.GetLock(ctx, name)
			assert.ErrorIs(t, err, lockmgr.ErrInvalidName, "GetLock(%q)", name)
			_, err = m.IsLocked(ctx, name)
			assert.ErrorIs(t, err, lockmgr.ErrInvalidName)
			assert.ErrorIs(t, m.Unlock(ctx, name), lockmgr.ErrInvalidName)
			_, err = m.RenewLock(ctx, name)
			assert.ErrorIs(t, err, lockmgr.ErrInvalidName)
		}
		for _, opt := range []lockmgr.LockOption{lockmgr.Expires(-time.Second), lockmgr.Wait(-1),
			lockmgr.KeepAliveEvery(0), lockmgr.LockedBy(strings.Repeat("h", 256)), nil} {
			_, err := m.GetLock(ctx, "ok", opt)
			assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		}
		assert.ErrorIs(t, m.Release(ctx, nil), lockmgr.ErrInvalidOption)
		_, err := m.Renew(ctx, nil)
		assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.Empty(t, c.take(), "no SQL ran for bad input")
		assert.Zero(t, c.begins.Load())
	})
}

func TestNamesAreByteExact(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		names := []string{"a", "A", "a ", " a", "\u00e9", "e\u0301", strings.Repeat("é", 127) + "x", "Ā", "'; DROP TABLE x; --", "%_*?"}
		for _, n := range names {
			e.lock(n)
		}
		locks, err := e.m.List(e.ctx)
		require.NoError(t, err)
		require.Len(t, locks, len(names), "every name is its own lock")
		for i := 1; i < len(locks); i++ {
			assert.Less(t, locks[i-1].Name, locks[i].Name, "List is in byte order")
		}
		require.NoError(t, e.m.Unlock(e.ctx, "A"))
		assert.True(t, e.isLocked("a"), "unlocking A leaves a")
		assert.True(t, e.isLocked("a "), "unlocking A leaves 'a '")
		assert.False(t, e.isLocked("a  "))
	})
}

func TestWithTx(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		err := e.db.Transaction(func(tx *gorm.DB) error {
			_, err := e.m.WithTx(tx).GetLock(e.ctx, "committed")
			return err
		})
		require.NoError(t, err)
		assert.True(t, e.isLocked("committed"))

		err = e.db.Transaction(func(tx *gorm.DB) error {
			tm := e.m.WithTx(tx)
			l, err := tm.GetLock(e.ctx, "rolled-back")
			require.NoError(t, err)
			ok, err := tm.IsLocked(e.ctx, "rolled-back")
			require.NoError(t, err)
			assert.True(t, ok, "the transaction sees its own lock")
			_, err = tm.RenewLock(e.ctx, "rolled-back", lockmgr.Expires(time.Hour))
			require.NoError(t, err, "a multi-statement call inside a caller's transaction")
			require.NoError(t, tm.Unlock(e.ctx, "committed"))
			_ = l
			return assert.AnError
		})
		require.ErrorIs(t, err, assert.AnError)
		assert.False(t, e.isLocked("rolled-back"), "rolled back with the caller's transaction")
		assert.True(t, e.isLocked("committed"), "the unlock was rolled back too")
	})
}

func TestStringMatchesDjango(t *testing.T) {
	until := time.Date(2019, 11, 22, 2, 1, 55, 439390000, time.UTC)
	l := &lockmgr.Lock{Name: "hello", LockedBy: "example.org", LockedUntil: &until}
	assert.Equal(t, "<Lock name='hello' locked_by='example.org' locked_until='2019-11-22 02:01:55.439390+00:00'>", l.String())
	whole := time.Date(2019, 11, 22, 2, 1, 55, 0, time.FixedZone("x", 3600))
	l.LockedUntil = &whole
	assert.Equal(t, "<Lock name='hello' locked_by='example.org' locked_until='2019-11-22 01:01:55+00:00'>", l.String())
	l.LockedUntil = nil
	assert.Equal(t, "<Lock name='hello' locked_by='example.org' locked_until='None'>", l.String())
}

func TestExpiresHelpers(t *testing.T) {
	until := time.Now().Add(79990 * time.Millisecond)
	l := &lockmgr.Lock{LockedUntil: &until}
	s, ok := l.ExpiresSeconds()
	assert.True(t, ok)
	assert.EqualValues(t, 79, s, "truncated, as django's docs print 79 for 79.99")
	assert.False(t, l.Expired())
	past := time.Now().Add(-time.Second)
	l.LockedUntil = &past
	assert.True(t, l.Expired())
	d, _ := l.ExpiresIn()
	assert.Negative(t, d)
	for ago, want := range map[time.Duration]int64{500 * time.Millisecond: 0, 1500 * time.Millisecond: -1} {
		until := time.Now().Add(-ago)
		l.LockedUntil = &until
		s, ok = l.ExpiresSeconds()
		assert.True(t, ok)
		assert.Equal(t, want, s, "expired %v ago: truncated toward zero", ago)
	}
	l.LockedUntil = nil
	s, ok = l.ExpiresSeconds()
	assert.False(t, ok, "never expires")
	assert.Zero(t, s)
}

func TestPluginAndFromDB(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		table := e.table + "_p"
		db := e.db.Session(&gorm.Session{NewDB: true})
		t.Cleanup(func() { _ = e.db.Migrator().DropTable(table, table+"_fence") })
		// A fresh *gorm.DB, so that the plugin registry is its own.
		fresh, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := fresh.DB(); err == nil {
				_ = s.Close()
			}
		})
		_, err = lockmgr.FromDB(fresh)
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption, "no plugin registered yet")
		require.NoError(t, fresh.Use(lockmgr.NewPlugin(lockmgr.WithTable(table))))
		m, err := lockmgr.FromDB(fresh)
		require.NoError(t, err)
		assert.True(t, db.Migrator().HasTable(table), "the plugin migrated its table")
		l, err := m.GetLock(e.ctx, "via-plugin")
		require.NoError(t, err)
		require.NoError(t, m.Release(e.ctx, l))
	})
}

func TestModelHooksGiveDefaults(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		until := time.Now().Add(time.Hour).In(time.FixedZone("far", 14*3600))
		direct := &lockmgr.Lock{Name: "direct", LockedUntil: &until}
		require.NoError(t, e.db.Table(e.table).Create(direct).Error)
		assert.NotEmpty(t, direct.LockedBy)
		assert.NotNil(t, direct.LockProcess)
		assert.Len(t, direct.Token, 32)
		assert.Positive(t, direct.Fence)
		assert.True(t, e.isLocked("direct"), "a row created through GORM is a live lock")
		_, err := e.m.GetLock(e.ctx, "direct")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.NoError(t, e.m.Release(e.ctx, direct), "its token owns it")

		err = e.db.Table(e.table).Create(&lockmgr.Lock{Name: ""}).Error
		require.ErrorIs(t, err, lockmgr.ErrInvalidName)
		var n int64
		require.NoError(t, e.db.Table(e.table).Count(&n).Error)
		assert.Zero(t, n, "nothing half-written")
	})
}

func TestNewLeavesCallersDBAlone(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		before := e.db.Statement.ConnPool
		m := e.manager()
		_, err := m.GetLock(e.ctx, "x")
		require.NoError(t, err)
		assert.Same(t, before, e.db.Statement.ConnPool, "New must not rewire the caller's *gorm.DB")
		_, err = e.db.DB()
		require.NoError(t, err)
	})
}

func TestAutoMigrateIsIdempotent(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.lock("kept")
		require.NoError(t, e.m.AutoMigrate(e.ctx))
		require.NoError(t, e.m.AutoMigrate(e.ctx))
		assert.True(t, e.isLocked("kept"))
		e.lock("A")
		e.lock("a ")
	})
}

func TestNewRejectsBadSetup(t *testing.T) {
	_, err := lockmgr.New(nil)
	require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	eachDB(t, func(t *testing.T, e *env) {
		for _, table := range []string{"", "x;y", "a.b.c", "1abc", `q"uote`, strings.Repeat("t", 64)} {
			_, err := lockmgr.New(e.db, lockmgr.WithTable(table))
			assert.ErrorIs(t, err, lockmgr.ErrInvalidOption, "WithTable(%q)", table)
		}
		_, err := lockmgr.New(e.db, lockmgr.WithOwner("bad\x00"))
		assert.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	})
}

// TestTimeZones reruns the expiry checks in a child process whose local
// zone is UTC+14 (then UTC-10), with database sessions in yet other zones.
func TestTimeZones(t *testing.T) {
	if os.Getenv("LOCKMGR_TZ_CHILD") != "" {
		timeZoneChecks(t)
		return
	}
	for _, tz := range []string{"Pacific/Kiritimati", "America/Adak"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTimeZones$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TZ="+tz, "LOCKMGR_TZ_CHILD=1")
		if dsn := os.Getenv(envPostgres); dsn != "" {
			cmd.Env = append(cmd.Env, envPostgres+"="+dsn+sep(dsn)+"timezone=Pacific/Chatham")
		}
		if dsn := os.Getenv(envMySQL); dsn != "" {
			cmd.Env = append(cmd.Env, envMySQL+"="+dsn+sep(dsn)+"time_zone=%27-11%3A00%27")
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "TZ=%s:\n%s", tz, out)
	}
}

func sep(dsn string) string {
	if strings.Contains(dsn, "?") {
		return "&"
	}
	return "?"
}

func timeZoneChecks(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("tz", lockmgr.Expires(time.Hour))
		assert.InDelta(t, 3600, secondsLeft(t, l), 5)
		assert.True(t, e.isLocked("tz"))
		locks, err := e.m.List(e.ctx)
		require.NoError(t, err)
		require.Len(t, locks, 1)
		assert.InDelta(t, 3600, secondsLeft(t, &locks[0]), 5)
		short := e.lock("short", lockmgr.Expires(2*time.Second))
		assert.InDelta(t, 2, secondsLeft(t, short), 1)
		eventually(t, 15*time.Second, func() bool { return !e.isLocked("short") }, "a 2 s lock expires in any zone")
		assert.True(t, e.isLocked("tz"), "an hour-long lock is still held")
		l, err = e.m.Renew(e.ctx, l, lockmgr.Expires(30*time.Second), lockmgr.AddTime())
		require.NoError(t, err)
		assert.InDelta(t, 3630, secondsLeft(t, l), 5)
	})
}

func TestExtremeDurations(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("longest", lockmgr.Expires(time.Duration(1<<63-1)))
		assert.Greater(t, secondsLeft(t, l), 200*365*24*3600.0, "the longest Duration is about 292 years")
		assert.True(t, e.isLocked("longest"))
		l = e.lock("shortest", lockmgr.Expires(time.Nanosecond))
		require.NotNil(t, l.LockedUntil, "a nanosecond rounds up to a microsecond, not to never")
		eventually(t, 5*time.Second, func() bool { return !e.isLocked("shortest") }, "1 ns lock expires")
	})
}

func TestGet(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("held", lockmgr.LockedBy("worker-7"), lockmgr.Process(0))
		got, err := e.m.Get(e.ctx, "held")
		require.NoError(t, err)
		assert.Equal(t, l.Token, got.Token)
		assert.Equal(t, "worker-7", got.LockedBy)
		assert.Nil(t, got.LockProcess, "Process(0) records no process")
		assert.Equal(t, l.Fence, got.Fence)
		_, err = e.m.Get(e.ctx, "free")
		require.ErrorIs(t, err, lockmgr.ErrLockNotFound)
		e.expire("held")
		_, err = e.m.Get(e.ctx, "held")
		require.ErrorIs(t, err, lockmgr.ErrLockNotFound, "an expired lock is absent")
	})
}

// traced is a GORM logger recording the statements GORM runs.
type traced struct {
	logger.Interface
	collected
}

func (c *traced) LogMode(logger.LogLevel) logger.Interface { return c }

func (c *traced) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	s, _ := fc()
	c.add(s)
}

// TestGORMCallbacksSeeLockStatementsWhenAsked: lock statements bypass
// GORM's callbacks, so its logger and plugins see none of them, unless
// WithGORMCallbacks routes them through GORM; both paths work.
func TestGORMCallbacksSeeLockStatementsWhenAsked(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		for _, via := range []bool{false, true} {
			tr := &traced{Interface: logger.Discard}
			db := e.db.Session(&gorm.Session{NewDB: true, Logger: tr})
			opts := []lockmgr.Option{lockmgr.WithTable(e.table)}
			if via {
				opts = append(opts, lockmgr.WithGORMCallbacks())
			}
			m, err := lockmgr.New(db, opts...)
			require.NoError(t, err)
			_, err = m.IsLocked(e.ctx, "warm-up") // the first call checks the table, through GORM
			require.NoError(t, err)
			tr.take()
			l, err := m.GetLock(e.ctx, "traced")
			require.NoError(t, err)
			l, err = m.Renew(e.ctx, l)
			require.NoError(t, err)
			require.NoError(t, m.Release(e.ctx, l))
			require.ErrorIs(t, m.Release(e.ctx, l), lockmgr.ErrNotHeld)
			got := tr.take()
			if !via {
				assert.Empty(t, got, "GORM's logger sees no lock statement")
				continue
			}
			assert.GreaterOrEqual(t, len(got), 4, "GORM's logger sees every lock statement: %q", got)
			assert.Contains(t, strings.Join(got, "\n"), "DELETE FROM")
		}
	})
}
