package lockmgr

import (
	"context"
	"time"
)

// maxStatementAttempts bounds the runs of one statement that the database
// keeps rolling back: deadlocks InnoDB breaks (a statement racing a
// release) and, on Galera, certification conflicts with another node.
const maxStatementAttempts = 12

// retrying runs fn, and runs it again, after a jittered backoff, while it
// fails with an error the database rolled back (Retryable, internal/engine), up to
// maxStatementAttempts times or until ctx ends. fn must be safe to repeat:
// one statement or one whole transaction of lockmgr's own. Inside a
// transaction nothing is repeated: the database aborted all of it (MySQL)
// or refuses further statements (PostgreSQL); its owner retries it whole.
func (m *Manager) retrying(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if m.inTx || attempt == maxStatementAttempts || !m.d.eng.Retryable(err, false) ||
			sleep(ctx, jitter(min(minBackoff<<attempt, 100*time.Millisecond))) != nil {
			return err
		}
	}
}
