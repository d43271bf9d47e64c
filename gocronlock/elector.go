package gocronlock

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-co-op/gocron/v2"

	"github.com/gormlock/lockmgr"
)

// ErrNotLeader is what an Elector's IsLeader returns on a member that does
// not lead its election; gocron then skips the run.
var ErrNotLeader = errors.New("gocronlock: not the leader")

// Elector is a gocron.Elector on a lockmgr.Election: pass it to
// gocron.WithDistributedElector on every replica, and only the replica that
// leads the election runs the jobs. The election must be run (Run, or the
// Election's own Run elsewhere in the process) for this member ever to
// lead.
type Elector struct{ e *lockmgr.Election }

var _ gocron.Elector = (*Elector)(nil)

// NewElector returns an Elector on e.
func NewElector(e *lockmgr.Election) *Elector { return &Elector{e: e} }

// IsLeader returns nil while this member leads the election, without a
// query (Election.Leading): not before its term began, nor once its lock
// is lost, resigned or in doubt (past its safe deadline). While Run's
// context has ended and lead still drains, the lock is still held and
// IsLeader still returns nil. Otherwise it returns ErrNotLeader. A job that starts just before leadership is
// lost still runs: work that must never come from a former leader goes
// through lockmgr's Guard or the term's fence.
func (el *Elector) IsLeader(context.Context) error {
	if el == nil || el.e == nil {
		return fmt.Errorf("%w: gocronlock: Elector without an Election", lockmgr.ErrInvalidOption)
	}
	if _, ok := el.e.Leading(); ok {
		return nil
	}
	return fmt.Errorf("%w (election %q)", ErrNotLeader, el.e.Name())
}

// Run campaigns in e until ctx ends, leading for as long as it can, and
// returns ctx's error (Election.Run with a lead function that waits for
// its context): run it in a goroutine of every replica beside the
// scheduler.
func (el *Elector) Run(ctx context.Context) error {
	if el == nil || el.e == nil {
		return fmt.Errorf("%w: gocronlock: Elector without an Election", lockmgr.ErrInvalidOption)
	}
	return el.e.Run(ctx, func(ctx context.Context, _ lockmgr.Term) error {
		<-ctx.Done()
		return ctx.Err()
	})
}
