package lockmgr_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// A scope whose keep-alive has not run since before the lock's safe
// deadline (four fifths of its expiry after the last renewal) answers Err
// and Done as lost at once, as a process resumed from a pause must: the
// cancellation happens inside the call, not when the keep-alive wakes.
func TestScopeContextKnowsItsDeadline(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		for _, check := range []string{"Err", "Done"} {
			t.Run(check, func(t *testing.T) {
				s, err := e.m.Acquire(e.ctx, "A"+check, lockmgr.Expires(time.Second))
				require.NoError(t, err)
				defer func() { _ = s.Close() }()
				acquired := time.Now()
				lockmgr.StallKeepAlive(s)
				ctx := s.Context()
				assert.NoError(t, ctx.Err(), "well before the safe deadline")
				time.Sleep(time.Until(acquired.Add(850 * time.Millisecond)))
				if check == "Err" {
					require.Error(t, ctx.Err(), "past the safe deadline, Err says so itself")
				}
				select {
				case <-ctx.Done():
				default:
					t.Fatal("Done is not closed past the safe deadline")
				}
				assert.ErrorIs(t, context.Cause(ctx), lockmgr.ErrLockLost)
				assert.ErrorIs(t, s.Close(), lockmgr.ErrLockLost)
			})
		}
	})
}

// A scope kept alive never reaches its deadline, however often it is
// checked; a lock that never expires has none.
func TestScopeContextDeadlineMovesWithRenewals(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		s, err := e.m.Acquire(e.ctx, "A", lockmgr.Expires(600*time.Millisecond))
		require.NoError(t, err)
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			require.NoError(t, s.Context().Err())
		}
		require.NoError(t, s.Close())
		s, err = e.m.Acquire(e.ctx, "B", lockmgr.NoExpiry())
		require.NoError(t, err)
		lockmgr.StallKeepAlive(s)
		assert.NoError(t, s.Context().Err())
		require.NoError(t, s.Close())
	})
}
