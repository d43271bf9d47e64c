package lockmgr_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// TestSemaphoreSlotGuard: a slot is a lock like any other, so Guard
// protects the writes made under it: a held slot's write commits, a
// released slot's does not, and Scope.Transaction inside Semaphore.Do
// guards with the scope's slot.
func TestSemaphoreSlotGuard(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		notes := e.notes()
		s := newSem(t, e.m, "exports", 2)
		l, err := s.Acquire(e.ctx, lockmgr.Expires(time.Minute))
		require.NoError(t, err)
		require.NoError(t, e.guardedWrite(e.db, e.m, notes, l, "slot held"))
		require.EqualValues(t, 1, e.noteCount(notes, "slot held"))

		require.NoError(t, s.Release(e.ctx, l))
		err = e.guardedWrite(e.db, e.m, notes, l, "slot released")
		require.ErrorIs(t, err, lockmgr.ErrNotHeld)
		require.Zero(t, e.noteCount(notes, "slot released"), "the write under a released slot rolled back")

		err = s.Do(e.ctx, func(ctx context.Context, sc *lockmgr.Scope) error {
			return sc.Transaction(ctx, func(tx *gorm.DB) error {
				return tx.Table(notes).Create(&guardNote{Note: "in Do"}).Error
			})
		}, lockmgr.Expires(time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 1, e.noteCount(notes, "in Do"))
	})
}
