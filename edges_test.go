package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// The edges of a caller's life: what each way a call or a scope can end
// does to its locks (docs/concepts.md, "When a caller's life ends").

// cutKey marks a context whose cancel func cutAfterInsert calls once the
// acquisition statement has run on the server, before lockmgr reads its
// reply: the moment a cancelled caller used to leave a lock held by nobody.
type cutKey struct{}

// cutAfterInsert registers, on e.db, callbacks that cancel a marked
// context right after an INSERT ran; the Manager it returns takes GORM's
// path so that they see its statements.
func cutAfterInsert(t *testing.T, e *env) *lockmgr.Manager {
	cut := func(db *gorm.DB) {
		if cancel, ok := db.Statement.Context.Value(cutKey{}).(context.CancelFunc); ok &&
			strings.Contains(db.Statement.SQL.String(), "INSERT") {
			cancel()
		}
	}
	name := "lockmgr_test:cut:" + e.table
	require.NoError(t, e.db.Callback().Row().After("gorm:row").Register(name, cut))
	require.NoError(t, e.db.Callback().Raw().After("gorm:raw").Register(name, cut))
	t.Cleanup(func() {
		_ = e.db.Callback().Row().Remove(name)
		_ = e.db.Callback().Raw().Remove(name)
	})
	m := e.manager(lockmgr.WithGORMCallbacks())
	_, err := m.IsLocked(e.ctx, "warm-up") // first-use checks run before the cut is armed
	require.NoError(t, err)
	return m
}

func cutContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	return context.WithValue(ctx, cutKey{}, cancel), cancel
}

func TestAcquisitionCutOffAfterCommitLeavesNoLock(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m := cutAfterInsert(t, e)
		calls := map[string]func(ctx context.Context, name string) error{
			"GetLock": func(ctx context.Context, name string) error {
				_, err := m.GetLock(ctx, name)
				return err
			},
			"GetLock NoExpiry": func(ctx context.Context, name string) error {
				_, err := m.GetLock(ctx, name, lockmgr.NoExpiry())
				return err
			},
			"GetLock Wait": func(ctx context.Context, name string) error {
				_, err := m.GetLock(ctx, name, lockmgr.Wait(time.Minute))
				return err
			},
			"Acquire": func(ctx context.Context, name string) error {
				s, err := m.Acquire(ctx, name)
				if err == nil {
					return errors.Join(errors.New("acquired"), s.Close())
				}
				return err
			},
			"Do": func(ctx context.Context, name string) error {
				return m.Do(ctx, name, func(context.Context, *lockmgr.Scope) error { return errors.New("fn ran") })
			},
		}
		for what, call := range calls {
			name := "cut:" + what
			ctx, cancel := cutContext()
			err := call(ctx, name)
			cancel()
			require.ErrorIs(t, err, context.Canceled, what)
			assert.False(t, e.isLocked(name), "%s: a lock won after its caller gave up is given back", what)
		}
	})
}

func TestDoKeepsLockUntilFnReturns(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx, stop := context.WithCancel(e.ctx)
		other := e.manager()
		var overlaps, tries atomic.Int32
		err := e.m.Do(ctx, "job", func(ctx context.Context, s *lockmgr.Scope) error {
			stop() // SIGTERM: the work is told to stop...
			<-ctx.Done()
			deadline := time.Now().Add(1500 * time.Millisecond) // ...and takes a while, past the expiry
			for time.Now().Before(deadline) {
				tries.Add(1)
				if l, err := other.GetLock(e.ctx, "job"); err == nil {
					overlaps.Add(1)
					_ = other.Release(e.ctx, l)
				}
				time.Sleep(50 * time.Millisecond)
			}
			return ctx.Err()
		}, lockmgr.Expires(900*time.Millisecond))
		require.ErrorIs(t, err, context.Canceled)
		assert.Zero(t, overlaps.Load(), "of %d attempts while fn ran, none got the lock", tries.Load())
		assert.False(t, e.isLocked("job"), "released once fn returned")
	})
}

func TestScopeKeepsExtraLocksAlive(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "main", lockmgr.Expires(900*time.Millisecond))
		require.NoError(t, err)
		require.NoError(t, s.Lock(e.ctx, "extra"))
		time.Sleep(1500 * time.Millisecond)
		assert.True(t, e.isLocked("extra"), "renewed like the main lock")
		require.NoError(t, s.Context().Err())
		// Its loss cancels the scope's context: another holder's token on it
		// (an expire-then-take-over would race with the keep-alive).
		require.NoError(t, e.db.Exec(fmt.Sprintf("UPDATE %s SET token = 'thief' WHERE name = ?", e.table), "extra").Error)
		eventually(t, 10*time.Second, func() bool { return s.Context().Err() != nil }, "a lost extra lock cancels the context")
		require.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
		require.ErrorIs(t, s.Close(), lockmgr.ErrLockLost)
		assert.True(t, e.isLocked("extra"), "Close leaves the thief alone")
		require.NoError(t, e.m.Unlock(e.ctx, "extra"))
		assert.False(t, e.isLocked("main"))
	})
}

func TestNoKeepAliveContextEndsAtExpiry(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		start := time.Now()
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(500*time.Millisecond), lockmgr.NoKeepAlive())
		require.NoError(t, err)
		<-s.Context().Done()
		assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "not before the expiry")
		assert.Less(t, time.Since(start), 5*time.Second)
		require.ErrorIs(t, context.Cause(s.Context()), lockmgr.ErrLockLost)
		require.ErrorIs(t, s.Close(), lockmgr.ErrLockLost)
	})
}

func TestScopeRenewAfterUnlockIsKeptAlive(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(900*time.Millisecond))
		require.NoError(t, err)
		require.NoError(t, s.Unlock(e.ctx, "A"))
		_, err = s.Renew(e.ctx, lockmgr.Expires(900*time.Millisecond))
		require.NoError(t, err)
		time.Sleep(1500 * time.Millisecond)
		assert.True(t, e.isLocked("A"), "the lock taken anew is kept alive")
		require.NoError(t, s.Context().Err())
		require.NoError(t, s.Close())
		assert.False(t, e.isLocked("A"))
	})
}

func TestRenewRefusesEmptyToken(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		l := e.lock("django-held", lockmgr.Expires(time.Minute))
		require.NoError(t, e.db.Exec(fmt.Sprintf("UPDATE %s SET token = '' WHERE name = ?", e.table), "django-held").Error)
		_, err := e.m.Renew(e.ctx, &lockmgr.Lock{Name: "django-held"}, lockmgr.Expires(time.Hour))
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		got, err := e.m.Get(e.ctx, "django-held")
		require.NoError(t, err)
		assert.InDelta(t, 60, secondsLeft(t, got), 5, "Django's lock was not extended")
		_, err = e.m.Renew(e.ctx, &lockmgr.Lock{Name: "django-held"}, lockmgr.Create())
		require.ErrorIs(t, err, lockmgr.ErrLocked, "Create takes the name anew, only if free")
		_ = l
	})
}

func TestScopesRefusedInsideTransactions(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		tx := e.db.Begin()
		require.NoError(t, tx.Error)
		defer tx.Rollback()
		for _, m := range []*lockmgr.Manager{e.m.WithTx(tx), e.managerOn(tx)} {
			_, err := m.Acquire(e.ctx, "A")
			require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
			err = m.Do(e.ctx, "A", func(context.Context, *lockmgr.Scope) error { return nil })
			require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		}
		assert.False(t, e.isLocked("A"))
	})
}

func (e *env) managerOn(db *gorm.DB) *lockmgr.Manager {
	m, err := lockmgr.New(db, lockmgr.WithTable(e.table))
	require.NoError(e.t, err)
	return m
}

func TestBadHandlesAndContexts(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		_, err := lockmgr.New(&gorm.DB{})
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = lockmgr.New(&gorm.DB{Config: &gorm.Config{}})
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.WithTx(nil).GetLock(e.ctx, "A")
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.WithTx(e.db).GetLock(e.ctx, "A")
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption, "WithTx of a handle that is not a transaction")
		var nilCtx context.Context
		_, err = e.m.GetLock(nilCtx, "A")
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.Acquire(nilCtx, "A")
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.IsLocked(nilCtx, "A")
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		require.ErrorIs(t, e.m.Unlock(nilCtx, "A"), lockmgr.ErrInvalidOption)
		_, err = e.m.SetLock(nilCtx, []string{"A"})
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		// The pool still works: nothing panicked half-way through a query.
		assert.False(t, e.isLocked("A"))
	})
}

func TestOptionsACallDoesNotTake(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		_, err := e.m.GetLock(e.ctx, "A", lockmgr.Fail())
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		require.ErrorContains(t, err, "GetLock does not take Fail()")
		_, err = e.m.GetLock(e.ctx, "A", lockmgr.NoKeepAlive())
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.SetLock(e.ctx, []string{"A"}, lockmgr.Wait(time.Second))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		_, err = e.m.Acquire(e.ctx, "A", lockmgr.AddTime())
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
		assert.False(t, e.isLocked("A"), "nothing was written")
		_, err = lockmgr.New(e.db, lockmgr.WithReleaseTimeout(0))
		require.ErrorIs(t, err, lockmgr.ErrInvalidOption)
	})
}

func TestFromDBInsideTransactionIsTransactional(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: logger.Discard}) // a plugin registry of its own
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		require.NoError(t, db.Use(lockmgr.NewPlugin(lockmgr.WithTable(e.table))))
		_ = db.Transaction(func(tx *gorm.DB) error {
			m, err := lockmgr.FromDB(tx)
			require.NoError(t, err)
			_, err = m.GetLock(e.ctx, "in-tx")
			require.NoError(t, err)
			return errors.New("roll back")
		})
		assert.False(t, e.isLocked("in-tx"), "the lock rolled back with the transaction, as New(tx)'s does")
	})
}
