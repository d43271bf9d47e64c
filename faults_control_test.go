package lockmgr_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// The controls of the fault-injection suite (faults_test.go): the checker
// must report a lock dropped by its caller, or the suite could not fail.

// TestFaultCheckerCatchesOrphans is the control: an acquisition that runs
// its statement to the end but, its caller having given up, drops the
// lock it won (what lockmgr did before it gave such locks back) leaves a
// name held by a token nobody has, and the checker says so.
func TestFaultCheckerCatchesOrphans(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		other := e.manager()
		var f faultLedger
		ctx, cancel := context.WithCancel(context.Background())
		naive := func(ctx context.Context, name string) error {
			_, err := e.m.GetLock(context.WithoutCancel(ctx), name, lockmgr.Expires(time.Hour))
			cancel() // the caller gives up as the reply arrives...
			if ctx.Err() != nil {
				return ctx.Err() // ...and the lock it won is dropped
			}
			return err
		}
		err := naive(ctx, "naive")
		require.ErrorIs(t, err, context.Canceled)
		settleFault(e, other, &f, "naive GetLock", one("naive"), nil, nil)
		require.Len(t, f.orphans, 1, "the checker reports the dropped lock")
		require.False(t, e.isLocked("naive"), "the checker cleared it")
	})
}

// TestFaultCheckerCatchesDriverCut is the control of the driver-level cut:
// the same "after the statement ran" cut, through a naive acquisition (a
// raw insert run with the caller's context that returns the context's
// error, as lockmgr's acquisitions did before they gave back what they
// won), leaves an orphan the checker reports; lockmgr's own GetLock, cut
// at the same point of its acquisition, leaves none.
func TestFaultCheckerCatchesDriverCut(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		m, db := faultDB(t, e)
		other := e.manager()
		until := map[string]string{
			"postgres": "statement_timestamp() + interval '1 hour'",
			"mysql":    "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR",
			"sqlite":   "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 hours')",
		}[e.kind]
		naive := func(ctx context.Context, name string) error {
			err := db.WithContext(ctx).Exec("INSERT INTO "+e.table+" (name, token, locked_until) VALUES (?, 'naive', "+until+")", name).Error
			if err == nil {
				err = ctx.Err()
			}
			return err // the lock the insert won is dropped
		}
		var f faultLedger
		p := &faultPlan{at: 1}
		err := naive(faultContext(p), "naive")
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, p.cutTime().IsZero(), "cut after the insert")
		settleFault(e, other, &f, "naive insert", one("naive"), nil, nil)
		require.Len(t, f.orphans, 1, "the checker reports the dropped lock")
		require.False(t, e.isLocked("naive"), "the checker cleared it")

		// lockmgr's GetLock, cut after its acquiring statement.
		dry := &faultPlan{}
		l, err := m.GetLock(faultContext(dry), "count")
		require.NoError(t, err)
		require.NoError(t, m.Release(e.ctx, l))
		for k := int32(1); k <= dry.seen.Load(); k++ {
			p := &faultPlan{at: k}
			got, err := gotLock(m.GetLock(faultContext(p), fmt.Sprintf("lockmgr:%d", k)))
			settleFault(e, other, &f, fmt.Sprintf("GetLock cut after statement %d: %v", k, err), one(fmt.Sprintf("lockmgr:%d", k)), got, nil)
		}
		require.Len(t, f.orphans, 1, "lockmgr leaves no orphan at the same cut")
	})
}
