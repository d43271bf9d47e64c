package engine

import (
	"context"
	"errors"
)

// TiDB. Its lock waits count whole seconds, an autocommit statement
// ignores them, and SET STATEMENT is not available; with several TiDB
// servers each statement reads the clock of the server that runs it. So
// its acquisition is a transaction (acquireBumpingFence) that locks the
// name's row with FOR UPDATE NOWAIT (error 3572, asked again as MariaDB's
// is), raises the name's fence bucket, waiting 1 s at most, and takes the
// fence from it. A holder's autocommit statements wait for the holding
// transaction or for their caller's deadline. Its table rebuild is in
// mysql_migrate.go.

// tidbFenceBump raises the name's bucket's high-water mark, after UPDATE.
// With several TiDB servers, UTC_TIMESTAMP() is the clock of whichever
// server runs the statement, so a fence read from it after a release can
// be lower than the previous holder's. An acquisition instead first raises
// its bucket's mark, in the same transaction, a write that TiDB orders
// after every earlier write of the bucket, and takes the fence from it;
// the clock is only a floor that keeps fences near the ones written before
// the table was on TiDB.
const tidbFenceBump = `{fences} SET hwm = GREATEST(hwm + 1, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)))
	WHERE id = CRC32(@name) % {buckets}`

// errNotAcquired rolls back an acquisition that found the name held.
var errNotAcquired = errors.New("lockmgr: not acquired")

// acquireBumpingFence is TiDB's acquisition: in one transaction, raise the
// name's fence bucket (FenceBump), then the conditional upsert that takes
// its fence from the bucket, then the read-back by token. A held name
// rolls the bump back. Inside a caller's transaction it is a savepoint.
func (e MySQL) acquireBumpingFence(ctx context.Context, r Runner) (a Acquired, found bool, err error) {
	err = r.Tx(ctx, func(tx Runner) error {
		a, found, err = e.bumpAndAcquire(ctx, tx)
		return err
	})
	if errors.Is(err, errNotAcquired) {
		return a, false, nil
	}
	return a, found, err
}

// bumpAndAcquire is the body of acquireBumpingFence's transaction tx.
func (MySQL) bumpAndAcquire(ctx context.Context, tx Runner) (Acquired, bool, error) {
	bump := StFenceBump
	if tx.Bounded() {
		// TiDB's row-lock waits count whole seconds, and an autocommit
		// statement's not at all: the name's row is locked first with
		// NOWAIT, so that a row another open transaction holds fails the
		// attempt at once (error 3572, which lockmgr asks again until its
		// bound has passed). The fence bucket, which another open
		// transaction holds only when it took a name of the same bucket, is
		// waited for 1 s at most, at no extra statement.
		if _, err := tx.Exec(ctx, StNoWait); err != nil {
			return Acquired{}, false, err
		}
		bump = StFenceBumpBounded
	}
	if _, err := tx.Exec(ctx, bump); err != nil {
		return Acquired{}, false, err
	}
	a, found, err := acquireThenRead(ctx, tx, StAcquire)
	if err == nil && !found {
		return a, false, errNotAcquired
	}
	return a, found, err
}
