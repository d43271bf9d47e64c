package lockmgr_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) hook(kind string) func(*lockmgr.Lock, time.Duration) {
	return func(l *lockmgr.Lock, d time.Duration) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if d < 0 {
			kind += "(negative duration)"
		}
		r.events = append(r.events, kind+":"+l.Name)
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

func TestLifecycleHooks(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		r := &recorder{}
		m := e.manager(lockmgr.WithHooks(lockmgr.Hooks{
			OnAcquire: r.hook("acquire"), OnRelease: r.hook("release"), OnRenew: r.hook("renew"),
			OnContended: r.hook("contended"), OnLost: r.hook("lost"),
		}))
		l, err := m.GetLock(e.ctx, "a")
		require.NoError(t, err)
		_, err = m.GetLock(e.ctx, "a")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		l, err = m.Renew(e.ctx, l)
		require.NoError(t, err)
		require.NoError(t, m.Release(e.ctx, l))
		require.ErrorIs(t, m.Release(e.ctx, l), lockmgr.ErrNotHeld)
		require.NoError(t, m.Unlock(e.ctx, "absent"))
		assert.Equal(t, []string{"acquire:a", "contended:a", "renew:a", "release:a"}, r.take(),
			"a failed release and an unlock of nothing are not releases")
	})
}

func TestLogger(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		var buf bytes.Buffer
		var mu sync.Mutex
		h := slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})
		m := e.manager(lockmgr.WithLogger(slog.New(h)))
		err := m.Do(e.ctx, "logged", func(ctx context.Context, s *lockmgr.Scope) error {
			require.NoError(t, e.m.Unlock(e.ctx, "logged"))
			e.lock("logged")
			<-ctx.Done()
			return nil
		}, lockmgr.Expires(600*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLockLost)
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		assert.Contains(t, out, "level=DEBUG msg=\"lockmgr: acquired\" name=logged")
		assert.Contains(t, out, "level=WARN msg=\"lockmgr: lock lost\" name=logged")
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
