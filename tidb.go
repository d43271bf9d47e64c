package lockmgr

import (
	"context"
	"errors"

	"gorm.io/gorm"
)

// errNotAcquired rolls back an acquisition that found the name held.
var errNotAcquired = errors.New("lockmgr: not acquired")

// acquireBumpingFence is TiDB's acquisition: in one transaction, raise the
// name's fence bucket (dialect.fenceBump), then the conditional upsert that
// takes its fence from the bucket, then the read-back by token. A held name
// rolls the bump back. Inside a caller's transaction GORM makes this a
// savepoint.
func (m *Manager) acquireBumpingFence(ctx context.Context, v *values, dest ...any) (found bool, err error) {
	// The table check runs outside the transaction, and a transaction the
	// database rolled back is retried whole (run).
	err = m.run(ctx, func() error {
		return m.conn(ctx).Transaction(func(tx *gorm.DB) error {
			found, err = m.bumpAndAcquire(ctx, tx, v, dest...)
			return err
		})
	})
	if errors.Is(err, errNotAcquired) {
		return false, nil
	}
	return found, err
}

// bumpAndAcquire is the body of acquireBumpingFence's transaction tx.
func (m *Manager) bumpAndAcquire(ctx context.Context, tx *gorm.DB, v *values, dest ...any) (bool, error) {
	t := m.WithTx(tx)
	t.ownTx = m.bounded()
	bump := m.d.fenceBump
	if t.ownTx {
		// TiDB's row-lock waits count whole seconds, and an autocommit
		// statement's not at all: the name's row is locked first with
		// NOWAIT, so that a row another open transaction holds fails the
		// attempt at once (error 3572, which tryAcquire asks again until
		// lockWaitBound has passed; lockwait.go). The fence bucket, which
		// another open transaction holds only when it took a name of the
		// same bucket, is waited for 1 s at most, at no extra statement.
		if _, err := t.exec(ctx, m.d.tidbNoWait, v); err != nil {
			return false, err
		}
		bump = m.d.fenceBumpBounded
	}
	if _, err := t.exec(ctx, bump, v); err != nil {
		return false, err
	}
	n, err := t.exec(ctx, m.d.acquire, v)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, errNotAcquired
	}
	return t.query(ctx, m.d.readBack, v, dest...)
}
