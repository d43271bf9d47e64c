package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

type ctxKey struct{}

// starts records Hooks.OnStart's operations: "op:name" at the start, and
// "op:name=fence/outcome" at the end, with the context the operation got.
type starts struct {
	mu     sync.Mutex
	events []string
}

func (s *starts) onStart(ctx context.Context, m *lockmgr.Manager, op, name string) (context.Context, func(*lockmgr.Lock, error)) {
	if m == nil || m.Table() == "" {
		s.add("no manager")
	}
	s.add(op + ":" + name)
	ctx = context.WithValue(ctx, ctxKey{}, op)
	return ctx, func(l *lockmgr.Lock, err error) {
		out := "ok"
		switch {
		case errors.Is(err, lockmgr.ErrLocked):
			out = "locked"
		case errors.Is(err, lockmgr.ErrNotHeld):
			out = "not-held"
		case err != nil:
			out = err.Error()
		}
		fence := int64(-1)
		if l != nil {
			fence = l.Fence
		}
		s.add(fmt.Sprintf("%s:%s=%d/%s", op, name, min(fence, 1), out))
	}
}

func (s *starts) add(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *starts) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.events
	s.events = nil
	return e
}

func TestHooksOnStart(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s := &starts{}
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{OnStart: s.onStart}))
		l, err := m.GetLock(e.ctx, "a")
		require.NoError(t, err)
		_, err = m.GetLock(e.ctx, "a", lockmgr.Wait(50*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		l, err = m.Renew(e.ctx, l)
		require.NoError(t, err)
		_, err = m.RenewLock(e.ctx, "a")
		require.NoError(t, err)
		require.NoError(t, m.Release(e.ctx, l))
		require.ErrorIs(t, m.Release(e.ctx, l), lockmgr.ErrNotHeld)
		require.NoError(t, m.Unlock(e.ctx, "absent"))
		assert.Equal(t, []string{
			"acquire:a", "acquire:a=1/ok", "acquire:a", "acquire:a=-1/locked",
			"renew:a", "renew:a=1/ok", "renew_lock:a", "renew_lock:a=1/ok",
			"release:a", "release:a=1/ok", "release:a", "release:a=1/not-held",
			"unlock:absent", "unlock:absent=-1/ok",
		}, s.take())

		// A scope: its acquisition, its keep-alive and its release at Close.
		err = m.Do(e.ctx, "b", func(ctx context.Context, sc *lockmgr.Scope) error {
			assert.Nil(t, ctx.Value(ctxKey{}), "the work's context is the caller's, not the hook's")
			require.Eventually(t, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.events) >= 4
			}, 10*time.Second, 10*time.Millisecond, "a keep-alive renewal")
			return nil
		}, lockmgr.Expires(2*time.Second), lockmgr.KeepAliveEvery(20*time.Millisecond))
		require.NoError(t, err)
		got := s.take()
		require.GreaterOrEqual(t, len(got), 6, "%v", got)
		assert.Equal(t, []string{"acquire:b", "acquire:b=1/ok", "keep_alive:b", "keep_alive:b=1/ok"}, got[:4])
		assert.Equal(t, []string{"release:b", "release:b=1/ok"}, got[len(got)-2:])
	})
}

func TestHooksOnStartNilResults(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{
			OnStart: func(context.Context, *lockmgr.Manager, string, string) (context.Context, func(*lockmgr.Lock, error)) {
				return nil, nil
			},
		}))
		l, err := m.GetLock(e.ctx, "a")
		require.NoError(t, err)
		require.NoError(t, m.Release(e.ctx, l))
	})
}

func TestManagerDB(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m := e.manager()
		assert.Same(t, e.db, m.DB())
		tx := e.db.Begin()
		defer tx.Rollback()
		assert.Same(t, e.db, m.WithTx(tx).DB(), "a WithTx Manager gives its parent's database, not the transaction")
	})
}
